"""`RootLayout` names every path under a root once; the readers find what the writers wrote."""

from __future__ import annotations

import pytest

from carve.storage.layout import RootLayout


def test_names_read_back():
    assert RootLayout.clusters(3, "meta.json") == ("clusters", "v003", "meta.json")
    assert RootLayout.manifest(12) == ("shards", "v012", "manifest.json")
    assert RootLayout.done_marker("clusters", 1) == ("clusters", "v001", "meta.json")
    assert RootLayout.done_marker("shards", 1) == ("shards", "v001", "manifest.json")
    assert RootLayout.parse_version("v1234") == 1234 and RootLayout.parse_version("v01") is None
    assert RootLayout.parse_version("tmp-v003") is None
    assert RootLayout.parse_batch("/r/events/batch=20261205T1-ab12/part-0.parquet") == "20261205T1-ab12"
    assert RootLayout.parse_batch("/r/events/part-0.parquet") is None
    with pytest.raises(ValueError, match="unknown version kind"):
        RootLayout.version("reports", 1)


def test_versions_and_parts_are_found_where_the_layout_puts_them(tmp_path):
    from carve.clustering.versions import claim_version, complete_versions
    from carve.storage.events import event_files, write_event_part
    from carve.storage.manifest import manifest_versions
    from carve.storage.root import open_root
    from carve.storage.schema import EVENT_SCHEMA

    with open_root(tmp_path) as root:
        v = claim_version(root, "shards")
        assert (tmp_path / "shards" / "v001").is_dir() and v == 1
        assert complete_versions(root, "shards") == [] and manifest_versions(root) == []
        (tmp_path / "shards" / "v001" / "manifest.json").write_text("{}")
        assert complete_versions(root, "shards") == [1] and manifest_versions(root) == [1]
        path = write_event_part(root, "b1", "ep/0", EVENT_SCHEMA.empty_table())
        assert path.startswith(str(tmp_path / "events" / "batch=b1"))
        assert event_files(root, ["b1"]) == [path] and event_files(root, ["b2"]) == []
