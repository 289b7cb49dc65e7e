"""Bundled torch trainer for the event-grounded world-action model.

Modules: `config` (the trainer's config section), `manifest` (validated manifest/shard reader),
`data` (streaming IterableDataset + collation), `model` (backbone + event/unified/chunk modes),
`checkpoint` (atomic save / validated load), `train` (loop, DDP entry point), `eval` (held-out
metrics and the three-mode comparison), `policy` (a trained model as `select_action`, for closed-loop
use) and `planner` (next-event captions at run time). The closed-loop study's own training on whole
episodes lives beside it, in `carve.sim.study_episodes` and `carve.sim.study_fit`. The commands are in `carve.cli.train` (`carve
train`, `carve eval-model`); small structured shards for tests come from `carve.sim.toydata`.
"""
