"""Export: curated events out of Carve, into formats trainers read.

`carve.export.lerobot.export_lerobot` writes a shards version as a LeRobot v3.0 dataset with
per-event language (subtasks, a Carve sidecar) and the version's balance as per-frame sampling
weights; `layout` holds lerobot's path constants and the info.json document, `video` the
encoder / stream-copy / PSNR helpers, `stats` the feature statistics, `writer` the folder
writer. `carve export` (cli/export.py) and the service's export job call it. `writer`,
`layout`, `stats` and `video` are the one LeRobot v3.0 writer: the simulator's datasets
(`carve.sim.lerobot_writer`, `carve synth`) are written through them too.
"""
