"""Arrow event schema, SQLite catalog, atomic Parquet writing, shards and manifests, filesystems."""
