"""Quality gates: what is wrong with a dataset before anyone trains on it (`carve check`).

`defects` names the kinds of defect and scores an episode, `signals` and `video` find defects in
one episode's signals and videos, `duplicates` finds near-duplicate episodes across a dataset,
and `check` runs them over any source Carve reads and writes the JSON and Markdown reports.
Every threshold is in physical units or seconds, in the `check` section of the configuration.
"""
