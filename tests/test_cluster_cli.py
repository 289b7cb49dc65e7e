"""`carve cluster / recluster / shard / versions` through pipeline.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

from test_cluster_curate import add_episodes, blob_embeddings

from carve.cli.main import main


def test_cli_cluster_shard_versions(tmp_path: Path, capsys):
    x, _ = blob_embeddings([60, 20, 20], seed=21, spread=0.15)
    add_episodes(tmp_path, x)
    root = str(tmp_path)
    assert main(["cluster", "--root", root, "--set", "cluster.k=3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["clusters_version"] == 1 and out["action"] == "clustered"

    assert main(["shard", "--root", root, "--policy", "temperature", "--total", "90",
                 "--set", "shard.rows_per_shard=32", "--set", "shard.mode=resample"]) == 0
    text = capsys.readouterr().out
    assert "shards v001: 90 rows in 3 shards" in text and "policy temperature" in text

    x2, _ = blob_embeddings([10], seed=21, spread=0.15)
    add_episodes(tmp_path, x2, first_episode=40, batch="b2")
    assert main(["cluster", "--root", root, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["clusters_version"] == 1 and out["drift"]["new_events"] == 10

    assert main(["recluster", "--root", root, "--set", "cluster.k=3"]) == 0
    assert "clusters v002: k=3" in capsys.readouterr().out

    assert main(["versions", "--root", root, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in s["clusters"]] == [1, 2]
    assert [r["version"] for r in s["shards"]] == [1]
    assert s["clusters"][0]["meta"]["n_assigned_later"] == 10


def test_cli_errors_exit_2_with_a_message(tmp_path: Path, capsys):
    assert main(["shard", "--root", str(tmp_path)]) == 2
    assert "no clustering yet" in capsys.readouterr().err
    assert main(["cluster", "--root", str(tmp_path)]) == 2
    assert "no committed events" in capsys.readouterr().err
