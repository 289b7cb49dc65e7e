"""Bundled torch trainer for the event-grounded world-action model.

Modules: `config` (the trainer's config section), `manifest` (validated manifest/shard reader),
`data` (streaming IterableDataset + collation), `model` (backbone + event/unified/chunk modes),
`checkpoint` (atomic save / validated load), `train` (loop, DDP entry point), `eval` (held-out
metrics and the three-mode comparison); for the closed-loop study: `episodes` (whole episodes
from event rows), `fit` (a policy fitted on them), `policy` (its closed-loop interface) and
`planner` (next-event captions at run time). The commands are in `carve.cli.train` (`carve
train`, `carve eval-model`); small structured shards for tests come from `carve.sim.toydata`.
"""
