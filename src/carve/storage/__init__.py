"""Arrow event schema, catalog, atomic Parquet writing, reading shards back, the typed shard manifest, filesystems."""
