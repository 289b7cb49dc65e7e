"""The map's binary frame (`GET /datasets/{d}/map/frame`, issue 22) over fabricated roots, in process.

The frame is decoded here with numpy alone, from the documented layout (magic, version, JSON
header, 8-aligned little-endian sections), not with the server's code, and compared with the
fabricated root's stored layout (`clusters/vNNN/layout.parquet`) read with pyarrow. Covered: the
points and their hover fields; the view box and a filter; the density underlay against
`np.histogram2d`; the payload bounded by the screen when the dataset grows 10x; the underlay
computed once per clustering version (kept in a file that a new server process reads) and
computed anew for a new version; a root with no clustering (404 with the reason); bad boxes (422).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.sim.service_fakes import fabricate_root

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _cfg(root: Path, **extra: Any) -> CarveConfig:
    return CarveConfig.model_validate({"root": str(root), "service": {"token": TOKEN, "rate_limit_per_min": 100_000},
                                       **extra})


def _client(root: Path, **extra: Any) -> TestClient:
    return TestClient(create_app(_cfg(root, **extra), start_runner=False))


def decode(buf: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, sections) of a frame, read as the format is documented."""
    assert buf[:4] == b"CMAP"
    version, n = struct.unpack("<II", buf[4:12])
    assert version == 1
    head = json.loads(buf[12:12 + n].decode())
    out = {}
    for s in head["sections"]:
        assert s["offset"] % 8 == 0 and s["offset"] >= 12 + n
        dt = np.dtype(s["dtype"])
        assert s["dtype"][0] in ("<", "|")  # little-endian (or one byte)
        a = np.frombuffer(buf, dtype=dt, count=s["nbytes"] // dt.itemsize, offset=s["offset"])
        out[s["name"]] = a.reshape(s["shape"])
    return head, out


def _ids(sec: dict[str, np.ndarray]) -> list[str]:
    off, data = sec["id_offsets"], sec["id_bytes"].tobytes()
    return [data[off[i]:off[i + 1]].decode() for i in range(len(off) - 1)]


def _layout(root: Path, dataset: str, version: int = 1) -> dict[str, dict[str, Any]]:
    t = pq.read_table(root / "clusters" / f"v{version:03d}" / "layout.parquet")
    t = t.filter(pc.equal(t.column("dataset"), dataset))
    return {r["event_id"]: r for r in t.to_pylist()}


def _get(c: TestClient, path: str, **params: Any) -> tuple[dict[str, Any], dict[str, np.ndarray], int]:
    r = c.get(path, params=params, headers=AUTH)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("application/vnd.carve.map-frame")
    head, sec = decode(r.content)
    return head, sec, len(r.content)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return fabricate_root(tmp_path_factory.mktemp("frame") / "root", datasets=("sim", "aloha"), episodes=6)


def test_frame_decodes_to_the_layout_points(small: Any):
    c = _client(small.root)
    lay = _layout(small.root, "sim")
    head, sec, _ = _get(c, "/datasets/sim/map/frame", width=800, height=600)
    assert head["dataset"] == "sim" and head["version"] == 1
    assert head["total"] == head["in_view"] == head["n"] == len(lay) and head["sampled"] is False
    ids = _ids(sec)
    assert sorted(ids) == sorted(lay)  # every point of the small dataset, each once
    for i, eid in enumerate(ids):
        row = lay[eid]
        assert sec["x"][i] == np.float32(row["x"]) and sec["y"][i] == np.float32(row["y"])
        assert int(sec["cluster"][i]) == row["cluster"]
        for col in ("task", "robot", "verb", "caption"):
            assert head["dicts"][col][int(sec[col][i])] == row[col], col
    xs = np.array([r["x"] for r in lay.values()], dtype=np.float64)
    ys = np.array([r["y"] for r in lay.values()], dtype=np.float64)
    ext = [xs.min(), xs.max(), ys.min(), ys.max()]
    assert np.allclose(head["extent"], ext)
    # the underlay: counts over the dataset's extent, rows along y
    bins = head["bins"]
    hist, _, _ = np.histogram2d(ys, xs, bins=bins, range=[ext[2:], ext[:2]])
    assert sec["density"].shape == (bins, bins) and int(sec["density"].sum()) == len(lay)
    assert np.array_equal(sec["density"].astype(np.int64), hist.astype(np.int64))
    # gzip on the wire when asked; the same frame
    r = c.get("/datasets/sim/map/frame", params={"width": 800, "height": 600}, headers={**AUTH, "Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip" and decode(r.content)[0]["n"] == head["n"]
    # the other dataset's frame holds only its own points
    _, sec_a, _ = _get(c, "/datasets/aloha/map/frame")
    assert sorted(_ids(sec_a)) == sorted(_layout(small.root, "aloha"))


def test_frame_view_box_and_filters(small: Any):
    c = _client(small.root)
    lay = _layout(small.root, "sim")
    xs = np.array([r["x"] for r in lay.values()])
    ys = np.array([r["y"] for r in lay.values()])
    box = {"x0": float(np.median(xs)), "x1": float(xs.max()), "y0": float(ys.min()), "y1": float(np.median(ys))}
    want = {e for e, r in lay.items()
            if box["x0"] <= np.float32(r["x"]) <= box["x1"] and box["y0"] <= np.float32(r["y"]) <= box["y1"]}
    head, sec, _ = _get(c, "/datasets/sim/map/frame", density="false", **box)
    assert 0 < len(want) < len(lay)
    assert set(_ids(sec)) == want and head["in_view"] == len(want) and head["total"] == len(lay)
    assert "density" not in sec and head["view"] == [box["x0"], box["x1"], box["y0"], box["y1"]]
    task = next(iter(lay.values()))["task"]
    head, sec, _ = _get(c, "/datasets/sim/map/frame", task=task)
    assert set(_ids(sec)) == {e for e, r in lay.items() if r["task"] == task}
    assert int(sec["density"].sum()) == head["total"] == len(set(_ids(sec)))  # the filtered rows' underlay
    assert c.get("/datasets/sim/map/frame", params={"x0": 0}, headers=AUTH).status_code == 422
    bad = c.get("/datasets/sim/map/frame", params={"x0": 1, "x1": 0, "y0": 0, "y1": 1}, headers=AUTH)
    assert bad.status_code == 422 and "x0 <= x1" in bad.json()["detail"]
    assert c.get("/datasets/sim/map/frame", params={"width": 1}, headers=AUTH).status_code == 422
    assert c.get("/datasets/nope/map/frame", headers=AUTH).status_code == 404


def test_frame_size_grows_with_the_screen_not_the_dataset(tmp_path: Path):
    sizes = {}
    for n_eps in (10, 100):  # 2,000 and 20,000 events
        fab = fabricate_root(tmp_path / f"r{n_eps}", datasets=("sim",), episodes=n_eps, events_per_episode=200, k=8,
                             failed_episodes=0, manifest=False)
        c = _client(fab.root)
        for w, h in ((160, 120), (320, 240)):  # 300 and 1,200 cells: fewer than the events
            head, sec, nbytes = _get(c, "/datasets/sim/map/frame", width=w, height=h, cell=8)
            cap = (w // 8) * (h // 8)
            assert head["total"] == n_eps * 200 and head["sampled"] is True
            assert head["n"] == len(sec["x"]) <= cap
            sizes[n_eps, w] = (head["n"], nbytes)
    for w in (160, 320):
        (n1, b1), (n10, b10) = sizes[10, w], sizes[100, w]
        assert b10 <= 1.5 * b1, (w, b1, b10)  # 10x the events, about the same bytes
        assert n10 >= n1  # more events fill more of the screen's cells, never beyond it
    assert sizes[100, 320][0] > 2 * sizes[100, 160][0]  # a larger screen gets more points


def test_density_is_computed_once_per_clustering_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from carve.audit import mapframe as mf
    from carve.audit.derive import derive_views
    from carve.clustering.curate import recluster
    from carve.storage.root import open_root

    fab = fabricate_root(tmp_path / "root", datasets=("sim",), episodes=8)
    calls: list[int] = []
    real = mf.density
    monkeypatch.setattr(mf, "density", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    c = _client(fab.root, cluster={"k": 4, "seed": 0})
    first = _get(c, "/datasets/sim/map/frame")[1]["density"]
    _get(c, "/datasets/sim/map/frame", width=500, height=400)  # another screen: the same underlay
    assert len(calls) == 1
    stored = list((fab.root / "clusters" / "v001" / "map_density").glob("sim.b*.npy"))
    assert len(stored) == 1 and np.array_equal(np.load(stored[0]), first)
    assert not list((fab.root / "clusters" / "v001" / "map_density").glob("*.tmp*"))
    c2 = _client(fab.root)  # a new server process reads the stored grid
    assert np.array_equal(_get(c2, "/datasets/sim/map/frame")[1]["density"], first) and len(calls) == 1

    root = open_root(str(fab.root))
    v2 = recluster(root, _cfg(fab.root, cluster={"k": 4, "seed": 0}))
    derive_views(root, v2, _cfg(fab.root, cluster={"k": 4, "seed": 0}).cluster)
    head, sec, _ = _get(c2, "/datasets/sim/map/frame", clusters_version=2)  # the latest is probed with a TTL
    assert head["version"] == v2 == 2 and len(calls) == 2  # a new version: a new underlay
    assert int(sec["density"].sum()) == head["total"]
    assert len(list((fab.root / "clusters" / "v002" / "map_density").glob("sim.b*.npy"))) == 1
    head1, _, _ = _get(c2, "/datasets/sim/map/frame", clusters_version=1)
    assert head1["version"] == 1 and len(calls) == 2  # the old version's grid is still the stored one


def test_frame_without_clustering_is_404_with_the_reason(tmp_path: Path):
    fab = fabricate_root(tmp_path / "root", datasets=("sim",), episodes=2, clusters=False)
    r = _client(fab.root).get("/datasets/sim/map/frame", headers=AUTH)
    assert r.status_code == 404 and "no clusters version" in r.json()["detail"]


def test_first_screen_revalidates_with_its_etag(small: Any):
    """A kept browser revalidates the first screen (no-cache) and gets a 304 without a body while
    the version and screen hold; another screen, a filter or a new server process behave as HTTP says."""
    c = _client(small.root)
    url = "/datasets/sim/map/frame"
    first = c.get(url, headers=AUTH)
    tag = first.headers["etag"]
    assert first.status_code == 200 and tag.startswith('"') and "no-cache" in first.headers["cache-control"]
    again = c.get(url, headers={**AUTH, "If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert c.get(url, headers={**AUTH, "If-None-Match": f'"other", W/{tag}'}).status_code == 304
    stale = c.get(url, headers={**AUTH, "If-None-Match": '"not-this-one"'})
    assert stale.status_code == 200 and decode(stale.content)[0]["total"] == decode(first.content)[0]["total"]
    other = c.get(url, params={"width": 500, "height": 400}, headers={**AUTH, "If-None-Match": tag})
    assert other.status_code == 200 and other.headers["etag"] != tag  # another screen is another frame
    plain = c.get(url, headers={**AUTH, "Accept-Encoding": "identity"})
    assert plain.status_code == 200 and plain.headers["etag"] != tag  # another encoding, another tag
    task = next(iter(_layout(small.root, "sim").values()))["task"]
    filtered = c.get(url, params={"task": task}, headers={**AUTH, "If-None-Match": tag})
    assert filtered.status_code == 200 and "etag" not in filtered.headers
    assert _client(small.root).get(url, headers={**AUTH, "If-None-Match": tag}).status_code == 304


def _carried(page: str) -> bytes | None:
    """The frame a map page carries (base64 in <script id="carve-frame">), or None."""
    import base64
    import re

    m = re.search(r'<script id="carve-frame" type="application/octet-stream">([A-Za-z0-9+/=]+)</script>', page)
    return base64.b64decode(m.group(1)) if m else None


def test_map_page_carries_its_first_screen(small: Any):
    """The map page of a dataset's whole map carries the first screen's frame (no second request):
    the same bytes as the frame route gives for the canvas the page last measured (its cookie),
    or for a 1280-px window's canvas; none with a filter in the address or for an unknown dataset."""
    c = _client(small.root)
    r = c.get("/ui/map", params={"dataset": "sim"}, headers={**AUTH, "Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip" and "no-store" in r.headers["cache-control"]
    carried = _carried(r.text)
    api = c.get("/datasets/sim/map/frame", params={"width": 930, "height": 638}, headers=AUTH).content
    assert carried == api
    head, sec = decode(carried)
    layout = _layout(small.root, "sim")
    assert head["total"] == len(layout) and set(_ids(sec)) <= set(layout)
    c.cookies.set("carve_map_screen", "500x300")
    sized = _carried(c.get("/ui/map", params={"dataset": "sim"}, headers=AUTH).text)
    assert sized == c.get("/datasets/sim/map/frame", params={"width": 500, "height": 300}, headers=AUTH).content
    assert sized != carried
    c.cookies.set("carve_map_screen", "9x99999")  # out of range: the default screen
    assert _carried(c.get("/ui/map", params={"dataset": "sim"}, headers=AUTH).text) == api
    task = next(iter(layout.values()))["task"]
    assert _carried(c.get("/ui/map", params={"dataset": "sim", "task": task}, headers=AUTH).text) is None
    missing = c.get("/ui/map", params={"dataset": "nosuch"}, headers=AUTH)
    assert missing.status_code == 200 and _carried(missing.text) is None
    assert c.get("/ui/map", params={"dataset": "sim"}).status_code == 401  # the key is still needed


def test_map_page_carries_its_style_and_script(small: Any, monkeypatch: Any):
    """A map page that carries its first screen carries ui.css and ui.js, byte for byte, in its own
    <style> and <script> and refers to neither file; a page without a frame (a filtered address,
    another page) refers to both, ui.js preloaded from the head. A static file holding the text
    that would end its element early is refused, naming the file."""
    import re

    from carve.report import ui_pages

    c = _client(small.root)
    css = c.get("/ui/static/ui.css", headers=AUTH).text
    js = c.get("/ui/static/ui.js", headers=AUTH).text
    whole = c.get("/ui/map", params={"dataset": "sim"}, headers=AUTH).text
    assert f"<style>{css}</style>" in whole and f"<script>{js}</script>" in whole
    assert not re.search(r'(href|src)="[^"]*/static/ui\.(css|js)"', whole)
    task = next(iter(_layout(small.root, "sim").values()))["task"]
    for page in (c.get("/ui/map", params={"dataset": "sim", "task": task}, headers=AUTH).text,
                 c.get("/ui/quality", params={"dataset": "sim"}, headers=AUTH).text):
        assert _carried(page) is None and js not in page and "<style>" not in page
        head = page.split("</head>")[0]
        assert '<link rel="stylesheet" href="/ui/static/ui.css">' in head
        assert '<link rel="preload" href="/ui/static/ui.js" as="script">' in head
        assert '<script src="/ui/static/ui.js"></script>' in page.split("</head>")[1]
    texts = {"ui.css": "a{}", "ui.js": "var s = '</SCRIPT>';"}
    monkeypatch.setattr(ui_pages, "_read", lambda name: texts[name].encode())
    with pytest.raises(ValueError, match=r"ui\.js contains '</script'"):
        ui_pages.inline_assets.__wrapped__()
    texts.update({"ui.css": "a{content:'</style>'}", "ui.js": ""})
    with pytest.raises(ValueError, match=r"ui\.css contains '</style'"):
        ui_pages.inline_assets.__wrapped__()
