"""The analysts' audit API (issue 14) over a real uvicorn server on loopback and a fabricated root.

The root (carve.sim.service_fakes.fabricate_root with `videos=True`) has two datasets whose
events point at real LeRobot v3.0 sources (H.264), a clusters v001 with its stored layout and a
shards v001. Covered: the map (points, filters, paging, bins, facets) read from
`clusters/v001/layout.parquet`; one cluster; neighbours; signals; the clip (cut with PyAV, a
Range request answered 206 with the right bytes, decoding to the event's frame count) and a
keyframe; review flags (round trip, audit trail, the Basic-auth key's user as `who`), their exclusion from
a newly cut shard version; coverage between two clusters versions, two shards versions and for
one ingest batch, and its CSV. The read-only module runs with the catalog in SQLite and in
PostgreSQL (tests/pg_server.py).
"""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import av
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.sim.service_fakes import LiveServer, fabricate_root
from carve.storage import access
from carve.storage.root import Root

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}



def _add_copy_of_episode_0(root: Root) -> tuple[pa.Table, pa.Table]:
    """Commit a copy of episode sim/ep0000 as a new episode sim/ep0100 (events new0000...) in batch
    b2; return the event rows of both."""
    from carve.storage.events import read_events, write_event_part
    ep0 = read_events(root).filter(pc.equal(read_events(root, columns=["episode_id"]).column("episode_id"), "sim/ep0000"))
    new = ep0.set_column(ep0.schema.get_field_index("episode_id"), "episode_id", pa.array(["sim/ep0100"] * ep0.num_rows))
    new = new.set_column(new.schema.get_field_index("event_id"), "event_id",
                         pa.array([f"new{i:04d}" for i in range(ep0.num_rows)]))
    write_event_part(root, "b2", "sim/ep0100", new)
    root.catalog.record_episodes([{"episode_id": "sim/ep0100", "dataset": "sim", "episode_index": 100,
                                   "source_uri": "/data/sim", "fingerprint": "fp100", "status": "ok",
                                   "num_events": new.num_rows, "batch": "b2"}])
    return ep0, new

def _cfg(root: Path, **extra: object) -> CarveConfig:
    return CarveConfig.model_validate({"root": str(root), "service": {"token": TOKEN, "rate_limit_per_min": 100_000},
                                       **extra})


@pytest.fixture(scope="module")
def env(tmp_path_factory, catalog_url_module):
    base = tmp_path_factory.mktemp("audit")
    fab = fabricate_root(base / "root", datasets=("sim", "aloha"), videos=True)
    app = create_app(_cfg(fab.root), start_runner=False)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as client:
        yield {"client": client, "url": srv.url, "fab": fab, "app": app}


def _events(fab, dataset: str) -> pq.ParquetDataset:
    t = pq.read_table(fab.root / "events", columns=["event_id", "episode_id", "dataset", "task", "start_frame",
                                                    "end_frame", "caption", "arms"])
    return t.filter(t.column("dataset").to_numpy(zero_copy_only=False) == dataset)


def test_map_reads_the_stored_layout_with_filters_and_paging(env):
    c, fab = env["client"], env["fab"]
    assert (fab.root / "clusters" / "v001" / "layout.parquet").exists()
    ev = _events(fab, "sim")
    body = c.get("/datasets/sim/map").json()
    assert body["version"] == 1 and body["total"] == ev.num_rows == len(body["points"])
    assert {p["event_id"] for p in body["points"]} == set(ev.column("event_id").to_pylist())
    x0, x1, y0, y1 = body["extent"]
    assert all(x0 <= p["x"] <= x1 + 1e-4 and y0 <= p["y"] <= y1 + 1e-4 for p in body["points"])
    assert set(body["points"][0]) >= {"event_id", "x", "y", "cluster", "task", "robot", "arms", "verb", "caption",
                                      "episode_id"}
    # the layout separates the clusters: each point is nearer its own cluster's mean than another's
    pts = body["points"]
    by_c: dict[int, list] = {}
    for p in pts:
        by_c.setdefault(p["cluster"], []).append((p["x"], p["y"]))
    big = {k: np.mean(v, axis=0) for k, v in by_c.items() if len(v) > 3}
    near = [min(big, key=lambda k: np.hypot(*(np.array([p["x"], p["y"]]) - big[k]))) == p["cluster"]
            for p in pts if p["cluster"] in big]
    assert np.mean(near) > 0.9
    # filters
    task = ev.column("task")[0].as_py()
    f = c.get("/datasets/sim/map", params={"task": task}).json()
    assert f["total"] == sum(1 for t in ev.column("task").to_pylist() if t == task) and f["total"] < body["total"]
    assert all(p["task"] == task for p in f["points"])
    f = c.get("/datasets/sim/map", params={"arm": "left", "verb": "close"}).json()
    assert f["total"] > 0 and all("left" in p["arms"] and p["verb"] == "close" for p in f["points"])
    f = c.get("/datasets/sim/map", params={"cluster": "0,2"}).json()
    assert f["total"] == sum(1 for p in pts if p["cluster"] in (0, 2)) and {p["cluster"] for p in f["points"]} == {0, 2}
    # paging covers every point once
    seen = []
    for off in range(0, body["total"], 7):
        page = c.get("/datasets/sim/map", params={"offset": off, "limit": 7}).json()
        assert page["total"] == body["total"] and page["offset"] == off and page["limit"] == 7
        seen += [p["event_id"] for p in page["points"]]
    assert seen == [p["event_id"] for p in pts]
    assert c.get("/datasets/nope/map").status_code == 404
    assert c.get("/datasets/sim/map", params={"clusters_version": 9}).status_code == 404
    assert c.get("/datasets/sim/map", params={"limit": 0}).status_code == 422


def test_map_bins_and_facets(env):
    c = env["client"]
    pts = c.get("/datasets/sim/map").json()["points"]
    b = c.get("/datasets/sim/map/bins", params={"bins": 4}).json()
    assert b["bins"] == 4 and sum(cell["count"] for cell in b["cells"]) == len(pts) == b["total"]
    assert all(0 <= cell["ix"] < 4 and 0 <= cell["iy"] < 4 and cell["cluster_count"] <= cell["count"]
               for cell in b["cells"])
    x0, x1, y0, y1 = b["extent"]
    for cell in b["cells"]:  # the majority cluster is right, from the points themselves
        inside = [p["cluster"] for p in pts
                  if min(int((p["x"] - x0) / (x1 - x0) * 4), 3) == cell["ix"]
                  and min(int((p["y"] - y0) / (y1 - y0) * 4), 3) == cell["iy"]]
        assert len(inside) == cell["count"] and inside.count(cell["cluster"]) == max(map(inside.count, inside))
    fa = c.get("/datasets/sim/map/facets").json()
    assert fa["versions"] == {"clusters": [1], "shards": [1]}
    for key in ("task", "robot", "verb", "cluster"):
        assert sum(r["count"] for r in fa["facets"][key]) == len(pts), key
        for r in fa["facets"][key]:
            assert r["count"] == sum(1 for p in pts if p[key] == r["value"])
    assert {r["value"] for r in fa["facets"]["arm"]} == {"left", "right"}


def test_cluster_detail(env):
    c, fab = env["client"], env["fab"]
    pts = c.get("/datasets/sim/map").json()["points"]
    d = c.get("/datasets/sim/clusters/0", params={"limit": 5}).json()
    members = [p for p in pts if p["cluster"] == 0]
    assert d["size"] == d["total"] == len(members) and len(d["events"]) == 5
    assert {e["event_id"] for e in d["events"]} <= {p["event_id"] for p in members}
    e = d["events"][0]
    assert e["clip_url"] == f"/events/{e['event_id']}/clip.mp4" and e["keyframe_url"].startswith("/events/")
    assert c.get(e["keyframe_url"]).headers["content-type"] == "image/jpeg"
    import json

    man = json.loads((fab.root / "shards" / "v001" / "manifest.json").read_text())
    assert d["balance"]["before"] == man["clusters"]["before"]["0"] and d["balance"]["after"] == man["clusters"]["after"]["0"]
    assert d["balance"]["shards_version"] == 1 and d["balance"]["rows"] >= d["balance"]["unique_events"] > 0
    assert sum(r["count"] for r in d["members"]["dataset"]) == d["size_all_datasets"] == 2 * d["size"]
    assert sum(r["count"] for r in d["members"]["task"]) == d["size"]
    assert len(d["near_duplicates"]) == d["duplicates"] == sum(1 for p in members if p["dup"])
    assert all(n["dup_of"] for n in d["near_duplicates"])
    assert c.get("/datasets/sim/clusters/99").status_code == 404


def test_neighbours_are_nearest_in_embedding_space_within_the_cluster(env):
    c, fab = env["client"], env["fab"]
    t = pq.read_table(fab.root / "events", columns=["event_id", "emb"])
    emb = {e: np.asarray(v) / np.linalg.norm(v) for e, v in zip(t.column("event_id").to_pylist(),
                                                                t.column("emb").to_pylist(), strict=True)}
    pts = {p["event_id"]: p for p in c.get("/datasets/sim/map").json()["points"]}
    pts |= {p["event_id"]: p for p in c.get("/datasets/aloha/map").json()["points"]}
    eid = fab.event_ids[0]
    n = c.get(f"/events/{eid}/neighbours", params={"k": 4}).json()
    assert n["cluster"] == pts[eid]["cluster"] and len(n["neighbours"]) == 4
    same = [e for e, p in pts.items() if p["cluster"] == n["cluster"] and e != eid]
    want = sorted(same, key=lambda e: -float(emb[e] @ emb[eid]))[:4]
    assert [x["event_id"] for x in n["neighbours"]] == want
    sims = [x["similarity"] for x in n["neighbours"]]
    assert sims == sorted(sims, reverse=True) and abs(sims[0] - float(emb[want[0]] @ emb[eid])) < 1e-4
    asg = pq.read_table(fab.root / "clusters" / "v001" / "assignments").to_pylist()
    rep = next(r["dup_of"] for r in asg if r["dup_of"])
    nn = c.get(f"/events/{rep}/neighbours").json()
    assert set(nn["duplicates"]) == {r["event_id"] for r in asg if r["dup_of"] == rep} and nn["dup_of"] is None
    dup = next(r for r in asg if r["dup_of"])
    assert c.get(f"/events/{dup['event_id']}/neighbours").json()["dup_of"] == dup["dup_of"]
    assert c.get("/events/nope0000/neighbours").status_code == 404


def test_neighbours_read_one_cluster_of_the_cluster_sorted_index(env):
    """The fabricated v001 has no neighbours index: the first request writes it (one row group per
    cluster); every event's neighbours are then the brute-force nearest of its cluster, read
    from that cluster's row groups and nothing else (no event part file is opened)."""
    from carve.clustering import neighbours as cn
    from carve.storage.root import open_root

    c, fab = env["client"], env["fab"]
    root = open_root(str(fab.root))
    first = c.get(f"/events/{fab.event_ids[1]}/neighbours", params={"k": 3})
    assert first.status_code == 200 and cn.neighbours_is_current(root, 1)
    meta = cn.read_neighbours_meta(root, 1)
    f = pq.ParquetFile(fab.root / "clusters" / "v001" / cn.NEIGHBOURS_PARQUET)
    asg = pq.read_table(fab.root / "clusters" / "v001" / "assignments", columns=["event_id", "cluster_id"])
    cluster_of = dict(zip(*(asg.column(x).to_pylist() for x in ("event_id", "cluster_id")), strict=True))
    assert f.num_row_groups == len(meta["groups"]) == len(set(cluster_of.values())) and meta["rows"] == len(cluster_of)
    for cl, (rg, n_rg, rows) in meta["groups"].items():  # one cluster per row group, all its members
        t = f.read_row_groups(list(range(rg, rg + n_rg)))
        assert set(t.column("cluster").to_pylist()) == {int(cl)} and t.num_rows == rows
        assert set(t.column("event_id").to_pylist()) == {e for e, x in cluster_of.items() if x == int(cl)}
    ev = pq.read_table(fab.root / "events", columns=["event_id", "emb"])
    emb = {e: np.asarray(v, np.float64) / np.linalg.norm(v) for e, v in zip(ev.column("event_id").to_pylist(),
                                                                           ev.column("emb").to_pylist(), strict=True)}

    aside = fab.root / "events-aside"
    (fab.root / "events").rename(aside)  # no event part file can be read now
    try:
        _nearest_in_cluster(c, fab, cluster_of, emb)
    finally:
        aside.rename(fab.root / "events")


def _nearest_in_cluster(c, fab, cluster_of: dict, emb: dict) -> None:
    for eid in fab.event_ids[::5]:
        n = c.get(f"/events/{eid}/neighbours", params={"k": 5})
        assert n.status_code == 200, n.text
        n = n.json()
        same = [e for e, x in cluster_of.items() if x == cluster_of[eid] and e != eid]
        sims = {e: float(emb[e] @ emb[eid]) for e in same}
        got = [x["event_id"] for x in n["neighbours"]]
        assert n["cluster"] == cluster_of[eid] and n["searched"] == len(same) + 1 and len(got) == min(5, len(same))
        want = sorted(sims.values(), reverse=True)[: len(got)]  # the k best similarities (ties in any order)
        assert np.allclose([sims[e] for e in got], want, atol=1e-5)
        assert all(abs(x["similarity"] - sims[x["event_id"]]) < 1e-4 for x in n["neighbours"])


def test_signals_mark_the_event_and_the_episode_boundaries(env):
    c, fab = env["client"], env["fab"]
    ev = _events(fab, "sim").to_pylist()
    row = ev[3]
    s = c.get(f"/events/{row['event_id']}/signals").json()
    assert s["source"] == "episode" and s["fps"] == 12.0
    assert len(s["t"]) == len(s["state"]["values"]) == len(s["action"]["values"]) == len(s["gripper"]["values"]) == 60
    assert s["state"]["names"] == ["x", "y", "z", "gripper"] and s["gripper"]["names"] == ["gripper"]
    assert s["event"]["start_frame"] == row["start_frame"] and s["event"]["t_start"] == pytest.approx(row["start_frame"] / 12, abs=1e-4)
    eps = [r for r in ev if r["episode_id"] == row["episode_id"]]
    assert len(s["boundaries"]) == len(eps) and sum(b["current"] for b in s["boundaries"]) == 1
    cur = next(b for b in s["boundaries"] if b["current"])
    assert cur["event_id"] == row["event_id"] and cur["t_end"] == pytest.approx(row["end_frame"] / 12, abs=1e-4)
    assert {"t_start", "t_end", "reason_start", "reason_end"} <= set(cur)
    # the gripper column is the source's: it alternates every 10 frames
    g = np.asarray(s["gripper"]["values"])[:, 0]
    assert g[5] == 0 and g[15] == 1
    w = c.get(f"/events/{row['event_id']}/signals", params={"context": 5}).json()
    assert w["window"] == {"start_frame": row["start_frame"] - 5, "end_frame": row["end_frame"] + 5}
    assert len(w["t"]) == row["end_frame"] - row["start_frame"] + 10 and w["t"][0] == pytest.approx((row["start_frame"] - 5) / 12, abs=1e-4)


def test_clip_is_cut_cached_and_served_with_ranges(env):
    c, fab = env["client"], env["fab"]
    row = _events(fab, "aloha").to_pylist()[4]
    r = c.get(f"/events/{row['event_id']}/clip.mp4")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
    full = r.content
    cached = list((fab.root / "cache" / "clips").glob(f"{row['event_id']}*.mp4"))
    assert len(cached) == 1 and cached[0].read_bytes() == full
    part = c.get(f"/events/{row['event_id']}/clip.mp4", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == full[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(full)}"
    tail = c.get(f"/events/{row['event_id']}/clip.mp4", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == full[-50:]
    assert c.get(f"/events/{row['event_id']}/clip.mp4",
                 headers={"Range": f"bytes={len(full) + 10}-"}).status_code == 416
    with av.open(io.BytesIO(full)) as cont:
        st = cont.streams.video[0]
        assert st.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in cont.decode(st)]
    n = row["end_frame"] - row["start_frame"]
    assert abs(len(frames) - n) <= 1
    # the moving white square of the source: it moves right frame by frame
    xs = [int(np.argmax(f[24, :, :].astype(int).sum(axis=1) > 600)) for f in frames[:5]]
    assert xs == sorted(xs) and xs[-1] > xs[0]
    webm = c.get(f"/events/{row['event_id']}/clip.mp4", params={"format": "webm"})
    assert webm.status_code == 200 and webm.headers["content-type"] == "video/webm"
    with av.open(io.BytesIO(webm.content)) as cont:
        assert abs(sum(1 for _ in cont.decode(video=0)) - n) <= 1
    assert c.get(f"/events/{row['event_id']}/clip.mp4", params={"camera": "nope"}).status_code == 404
    assert c.get(f"/events/{row['event_id']}/keyframe.jpg", params={"i": 1}).content[:2] == b"\xff\xd8"
    assert c.get(f"/events/{row['event_id']}/keyframe.jpg", params={"i": 9}).status_code == 404
    assert httpx.get(f"{env['url']}/events/{row['event_id']}/clip.mp4").status_code == 401


def test_flags_round_trip_with_audit_trail(env):
    c, fab = env["client"], env["fab"]
    eid = fab.event_ids[1]
    # who is the authenticated user: alice's own key (issue 24), sent as the Basic password
    alice = access.add_key(env["app"].state.catalogs.get(), "alice", "analyst")[0]
    basic = {"Authorization": "Basic " + base64.b64encode(f"alice:{alice}".encode()).decode()}
    r = c.post(f"/events/{eid}/flags", json={"kind": "wrong_boundary", "note": "ends too early"}, headers=basic)
    assert r.status_code == 201
    f = r.json()
    assert f["who"] == "alice" and f["state"] == "active" and f["event_id"] == eid and f["kind"] == "wrong_boundary"
    assert f["episode_id"] and f["dataset"] == "sim" and f["note"] == "ends too early" and f["created_at"] > 0
    g = c.post(f"/events/{eid}/flags", json={"kind": "wrong_caption", "note": None}).json()
    assert g["who"] == "token"
    assert [x["id"] for x in c.get(f"/events/{eid}/flags").json()] == [f["id"], g["id"]]
    assert {x["id"] for x in c.get("/datasets/sim/flags").json()} >= {f["id"], g["id"]}
    assert c.get("/datasets/aloha/flags").json() == []
    d = c.delete(f"/events/{eid}/flags/{f['id']}", headers={**basic})
    assert d.status_code == 200 and d.json()["state"] == "cleared" and d.json()["cleared_by"] == "alice"
    assert d.json()["cleared_at"] >= f["created_at"]
    active = c.get(f"/events/{eid}/flags", params={"state": "active"}).json()
    assert [x["id"] for x in active] == [g["id"]]
    trail = c.get(f"/events/{eid}/flags", params={"state": "all"}).json()
    assert {x["id"]: x["state"] for x in trail} == {f["id"]: "cleared", g["id"]: "active"}
    assert c.delete(f"/events/{eid}/flags/nosuchflag").status_code == 404
    assert c.post(f"/events/{eid}/flags", json={"kind": "meh"}).status_code == 422
    # a NUL byte in the note: refused (PostgreSQL's text cannot hold it: it was a 500 there)
    assert c.post(f"/events/{eid}/flags", json={"kind": "keep", "note": "a\x00b"}).status_code == 422
    assert c.post("/events/nope0000/flags", json={"kind": "bad_episode"}).status_code == 404
    c.delete(f"/events/{eid}/flags/{g['id']}")


def test_coverage_of_one_version(env):
    c = env["client"]
    body = c.get("/datasets/sim/coverage").json()
    assert body["by_task"] and body["kind"] == "clusters" and body["from"] == body["to"] == 1
    assert all(r["status"] == "same" and r["delta"] == 0 for r in body["clusters"])
    sizes = sorted(r["after"] for r in body["clusters"])
    assert body["median"] == float(np.median(sizes))
    tiny = env["fab"].tiny_cluster  # one lone event of the last dataset (aloha); none of sim
    assert [(u["cluster"], u["size"]) for u in body["under_covered"]] == [(tiny, 0)]
    assert body["under_covered"][0]["suggested_episodes"] > 0 and body["under_covered"][0]["caption"]
    al = c.get("/datasets/aloha/coverage").json()
    assert [(u["cluster"], u["size"], u["episodes"]) for u in al["under_covered"]] == [(tiny, 1, 1)]
    u = al["under_covered"][0]
    assert u["suggested_episodes"] == int(np.ceil(al["median"] - 1)) and u["caption"] and u["ratio"] < 0.25
    none = c.get("/datasets/aloha/coverage", params={"min_ratio": 0.01}).json()
    assert none["under_covered"] == []


def test_flags_exclude_events_from_the_next_shard_version_and_coverage_over_versions(tmp_path, catalog_url):
    from carve.audit.derive import derive_views
    from carve.clustering.curate import recluster
    from carve.clustering.summary import layout_is_current
    from carve.shard.cut import cut_shards
    from carve.storage.root import open_root

    fab = fabricate_root(tmp_path / "root", datasets=("sim",), episodes=8)
    cfg = _cfg(fab.root, cluster={"k": 4, "seed": 0}, shard={"total_events": None})
    app = create_app(cfg, start_runner=False)
    ev = pq.read_table(fab.root / "events", columns=["event_id", "episode_id"]).to_pylist()
    lone = ev[0]["event_id"]
    bad = next(r for r in ev if r["episode_id"] != ev[0]["episode_id"])
    bad_events = {r["event_id"] for r in ev if r["episode_id"] == bad["episode_id"]}
    cleared = ev[-2]["event_id"]
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
        # no source video here (/data/sim does not exist): signals fall back to the event row, no clip
        sig = c.get(f"/events/{lone}/signals").json()
        assert sig["source"] == "event_row" and sig["source_error"] and len(sig["t"]) == len(sig["state"]["values"]) == 10
        clip = c.get(f"/events/{lone}/clip.mp4")
        assert clip.status_code == 404 and "source video" in clip.json()["detail"]
        assert c.post(f"/events/{lone}/flags", json={"kind": "wrong_caption"}).status_code == 201
        assert c.post(f"/events/{bad['event_id']}/flags", json={"kind": "bad_episode", "note": "sensor glitch"}
                      ).status_code == 201
        fid = c.post(f"/events/{cleared}/flags", json={"kind": "wrong_boundary"}).json()["id"]
        assert c.delete(f"/events/{cleared}/flags/{fid}").status_code == 200  # unflagged: stays in

        root = open_root(str(fab.root))
        v2 = recluster(root, cfg)  # a second clustering version
        derive_views(root, v2, cfg.cluster)  # and its views, derived after it
        assert v2 == 2 and layout_is_current(root, 2)
        v = cut_shards(root, cfg)
        assert v == 2
        import json

        man = json.loads((fab.root / "shards" / "v002" / "manifest.json").read_text())
        shard_ids = set(pq.read_table(sorted((fab.root / "shards" / "v002").glob("*.parquet")),
                                      columns=["event_id"]).column("event_id").to_pylist())
        assert lone not in shard_ids and not (bad_events & shard_ids) and cleared in shard_ids
        flagged = {lone} | bad_events
        asg = pq.read_table(fab.root / "clusters" / "v002" / "assignments")
        dups = set(asg.filter(asg.column("dup_of").is_valid()).column("event_id").to_pylist())
        assert man["flagged_excluded"] == len(flagged - dups) > 0
        assert shard_ids == {r["event_id"] for r in ev} - flagged - dups

        # coverage between two shard versions (v001 over clusters v001, v002 over v002: matched by centroid)
        s = c.get("/datasets/sim/coverage", params={"kind": "shards", "from": 1, "to": 2}).json()
        assert s["kind"] == "shards" and (s["from"], s["to"]) == (1, 2)
        assert sum(r["after"] for r in s["clusters"]) == man["total_rows"]
        assert all(r["delta"] == r["after"] - r["before"] for r in s["clusters"])
        assert sum(r["before"] for r in s["clusters"]) == len(ev)  # shards v001 of the fabricator: every event

        # coverage between the two clusters versions; the map of v002 from its layout
        cv = c.get("/datasets/sim/coverage", params={"from": 1, "to": 2, "kind": "clusters"}).json()
        assert (cv["from"], cv["to"]) == (1, 2)
        assert sum(r["after"] for r in cv["clusters"]) == sum(r["before"] for r in cv["clusters"]) == len(ev)
        assert {r["status"] for r in cv["clusters"]} <= {"grew", "shrank", "appeared", "vanished", "same"}
        assert "drift_ratio" in cv and cv["drift"]["version"] == 2
        assert all(r["delta"] == r["after"] - r["before"] for r in cv["clusters"])
        m2 = c.get("/datasets/sim/map", params={"clusters_version": 2}).json()
        assert m2["version"] == 2 and m2["total"] == len(ev)

        # one ingest batch: everything of the fabricated batch is new
        b = c.get("/datasets/sim/coverage", params={"batch": "20260101T000000-fab001"}).json()
        assert b["kind"] == "batch" and all(r["before"] == 0 and r["status"] == "appeared" for r in b["clusters"])
        assert c.get("/datasets/sim/coverage", params={"batch": "nope"}).status_code == 404

        # the CSV of under-covered clusters
        r = c.get("/datasets/sim/coverage.csv", params={"from": 1, "to": 1, "min_ratio": 0.5})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"].startswith("attachment;")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        j = c.get("/datasets/sim/coverage", params={"from": 1, "to": 1, "min_ratio": 0.5}).json()
        assert [int(x["cluster"]) for x in rows] == [u["cluster"] for u in j["under_covered"]] and rows
        assert all(int(x["suggested_episodes"]) > 0 and x["representative_caption"] for x in rows)


def test_layout_is_derived_after_a_streamed_clustering_and_extended_after_assign_new(tmp_path, monkeypatch):
    from carve.audit.derive import derive_views
    from carve.clustering.curate import assign_new, cluster_catalog
    from carve.clustering.summary import LayoutProjector, read_layout, read_layout_meta
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    monkeypatch.delenv("CARVE_CATALOG_URL", raising=False)
    fab = fabricate_root(tmp_path / "root", datasets=("sim",), episodes=6, clusters=False)
    # a sample of 4 x k events: k-means trains on it, the rest is assigned (and laid out) in streamed batches
    cfg = _cfg(fab.root, cluster={"k": 3, "seed": 0, "train_sample_per_centroid": 4, "batch_rows": 7})
    root = open_root(str(fab.root))
    v = cluster_catalog(root, cfg)
    assert read_layout(root, v) is None  # clustering makes no views: derive_views does, after it
    derive_views(root, v, cfg.cluster)
    lay = read_layout(root, v)
    ev = read_events(root, columns=["event_id", "episode_id", "emb"])
    assert lay is not None and lay.column("event_id").to_pylist() == ev.column("event_id").to_pylist()
    proj = LayoutProjector.from_dict(read_layout_meta(root, v)["projection"])
    x = np.asarray(ev.column("emb").to_pylist(), dtype=np.float32)
    xy = proj.project(x / np.linalg.norm(x, axis=1, keepdims=True))
    assert np.allclose(np.c_[lay.column("x").to_numpy(), lay.column("y").to_numpy()], xy, atol=1e-5)
    asg = pq.read_table(fab.root / "clusters" / "v001" / "assignments")
    cluster_of = dict(zip(asg.column("event_id").to_pylist(), asg.column("cluster_id").to_pylist(), strict=True))
    assert lay.column("cluster").to_pylist() == [cluster_of[e] for e in lay.column("event_id").to_pylist()]
    # a new episode (a copy of episode 0 under a new id) is assigned later: old positions stay, its own are added
    ep0, new = _add_copy_of_episode_0(root)
    assert assign_new(root, cfg) == v
    derive_views(root, v, cfg.cluster)
    lay2 = read_layout(root, v)
    assert lay2 is not None and lay2.num_rows == lay.num_rows + new.num_rows
    old = {r["event_id"]: (r["x"], r["y"]) for r in lay.to_pylist()}
    now = {r["event_id"]: (r["x"], r["y"]) for r in lay2.to_pylist()}
    assert all(now[e] == old[e] for e in old)
    for i, e in enumerate(ep0.column("event_id").to_pylist()):
        assert np.allclose(now[f"new{i:04d}"], old[e], atol=1e-5)


def test_neighbours_index_is_derived_after_clustering_and_extended_after_assign_new(tmp_path, monkeypatch):
    """`derive_views` after `cluster_catalog` (streamed: a sample of 4 x k) writes the cluster-sorted
    vectors of the version; after `assign_new` it adds the new events to their clusters' row groups,
    keeping the rest."""
    from carve.audit.derive import derive_views
    from carve.clustering import neighbours as cn
    from carve.clustering.curate import assign_new, cluster_catalog
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    monkeypatch.delenv("CARVE_CATALOG_URL", raising=False)
    fab = fabricate_root(tmp_path / "root", datasets=("sim",), episodes=6, clusters=False)
    cfg = _cfg(fab.root, cluster={"k": 3, "seed": 0, "train_sample_per_centroid": 4, "batch_rows": 7})
    root = open_root(str(fab.root))
    v = cluster_catalog(root, cfg)
    derive_views(root, v, cfg.cluster)
    assert cn.neighbours_is_current(root, v)

    def check() -> int:
        ev = read_events(root, columns=["event_id", "emb"])
        unit = {e: np.asarray(x, np.float32) / np.linalg.norm(x) for e, x in zip(
            ev.column("event_id").to_pylist(), ev.column("emb").to_pylist(), strict=True)}
        asg = pq.read_table(fab.root / "clusters" / f"v{v:03d}" / "assignments", columns=["event_id", "cluster_id"])
        cluster_of = dict(zip(*(asg.column(x).to_pylist() for x in ("event_id", "cluster_id")), strict=True))
        assert set(cluster_of) == set(unit)
        for c in set(cluster_of.values()):
            got = cn.read_cluster(root, v, c)
            assert got is not None
            ids, x = got
            assert sorted(ids) == sorted(e for e, k in cluster_of.items() if k == c)
            assert np.allclose(x, np.stack([unit[e] for e in ids]), atol=1e-6)
        assert cn.read_cluster(root, v, 99) is not None and len(cn.read_cluster(root, v, 99)[0]) == 0
        return len(cluster_of)

    n0 = check()
    _, new = _add_copy_of_episode_0(root)
    assert assign_new(root, cfg) == v
    assert not cn.neighbours_is_current(root, v)
    derive_views(root, v, cfg.cluster)
    assert cn.neighbours_is_current(root, v) and cn.read_neighbours_meta(root, v)["rows"] == n0 + new.num_rows
    assert check() == n0 + new.num_rows
