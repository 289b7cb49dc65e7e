"""Shards: how a clustering version becomes balanced training data, and how it is drawn.

`balance` (policies: rows or sampling weights per cluster), `sampling` (the one weighted-epoch
draw, which the trainer's loader and `iter_weighted` use), `write` (cutting an ordered table
into zstd Parquet shard parts, hashed and written atomically), `manifest` (building and
writing `manifest.json` last) and `cut` (`cut_shards`: the eligible events of the latest
clustering -> balance -> shards -> manifest). Reading a version back is `carve.storage.shards`
and the typed manifest is `carve.storage.manifest`, below every consumer.
"""
