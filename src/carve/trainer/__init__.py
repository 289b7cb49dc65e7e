"""Bundled torch trainer for the event-grounded world-action model.

Modules: `config` (dataclass config), `manifest` (validated manifest/shard reader),
`data` (streaming IterableDataset + collation), `model` (backbone + event/unified/chunk modes),
`checkpoint` (atomic save / validated load), `train` (loop, DDP entry point), `eval`
(held-out metrics and the three-mode comparison), `cli` (`carve train`, `carve eval-model`),
`toydata` (small structured shards for tests and benchmarks).
"""
