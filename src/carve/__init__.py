"""Carve: event-grounded curation of robot-manipulation video.

The import namespace over the repository's top-level packages, bottom to top:
`carve.core` (config, errors, logging), `carve.storage` (schema, catalog, parts, shards,
manifest, filesystems, the root handle), `carve.ingest` (sources, video, segmentation),
`carve.captioners`, `carve.embedding`, `carve.clustering`, `carve.shard` (balance, the
weighted-epoch draw, the cut), `carve.pipeline` (Ray stages and the DAG), `carve.trainer`, `carve.service`, `carve.report` and `carve.cli`. `carve.sim` sits
beside them (simulator and test fabricators); nothing in the house imports it.
"""

__version__ = "0.2.0"
