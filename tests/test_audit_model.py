"""The audit read model (carve/audit/): typed responses in the OpenAPI schema, one under-covered
rule for /clusters and /coverage, one path table for the routes, ui.js and ui-export, and the
views derived after clustering by one call (`derive_views`)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from carve.audit import models as am
from carve.audit.paths import PATHS, url
from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.sim.service_fakes import LiveServer, fabricate_root

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _cfg(root: Path) -> CarveConfig:
    return CarveConfig.model_validate({"root": str(root), "service": {"token": TOKEN, "rate_limit_per_min": 100_000}})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    fab = fabricate_root(tmp_path_factory.mktemp("audit") / "root", datasets=("sim", "aloha"), episodes=8)
    app = create_app(_cfg(fab.root), start_runner=False)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
        yield {"client": c, "fab": fab, "app": app}


def test_openapi_names_the_audit_response_models(env):
    spec = env["app"].openapi()
    schemas = spec["components"]["schemas"]
    for model in am.AUDIT_MODELS:
        assert model.__name__ in schemas, model.__name__
    expect = {PATHS["map"]: "MapResponse", PATHS["bins"]: "MapBinsResponse", PATHS["facets"]: "MapFacetsResponse",
              PATHS["cluster"]: "ClusterDetailResponse", PATHS["neighbours"]: "NeighboursResponse",
              PATHS["coverage"]: "CoverageResponse", "/datasets/{name}/clusters": "ClustersResponse"}
    for path, name in expect.items():
        ref = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{name}", path


def test_audit_bodies_are_described_exactly_by_their_models(env):
    c, fab = env["client"], env["fab"]
    ev = fab.event_ids[0]
    bodies = [
        (am.ClustersResponse, c.get("/datasets/sim/clusters")),
        (am.MapResponse, c.get(url("map", {"limit": 50}, name="sim"))),
        (am.MapBinsResponse, c.get(url("bins", {"bins": 8}, name="sim"))),
        (am.MapFacetsResponse, c.get(url("facets", name="sim"))),
        (am.ClusterDetailResponse, c.get(url("cluster", name="sim", cluster=fab.tiny_cluster))),
        (am.NeighboursResponse, c.get(url("neighbours", "k=3", event_id=ev))),
        (am.CoverageResponse, c.get(url("coverage", name="sim"))),
        (am.CoverageResponse, c.get(url("coverage", {"kind": "shards"}, name="aloha"))),
    ]
    for model, r in bodies:
        assert r.status_code == 200, r.text
        body = r.json()
        assert model.model_validate(body).model_dump(by_alias=True, exclude_unset=True) == body, model.__name__


def test_one_under_covered_rule_for_clusters_and_coverage(env):
    """Expected sets from the cluster sizes alone: size < 0.25 x the median non-empty cluster size."""
    c = env["client"]
    for name in ("sim", "aloha"):
        rows = c.get(f"/datasets/{name}/clusters").json()["clusters"]
        sizes = {r["cluster_id"]: r["size"] for r in rows}
        nonempty = sorted(n for n in sizes.values() if n > 0)
        mid = len(nonempty) // 2
        median = nonempty[mid] if len(nonempty) % 2 else (nonempty[mid - 1] + nonempty[mid]) / 2
        expected = {cid for cid, n in sizes.items() if n < 0.25 * median}
        assert expected, f"{name}: the fixture has an under-covered cluster"
        assert {r["cluster_id"] for r in rows if r["under_covered"]} == expected
        cov = c.get(f"/datasets/{name}/coverage").json()
        assert cov["median"] == median
        assert {u["cluster"] for u in cov["under_covered"]} == expected


def test_one_path_table_for_routes_pages_and_export(env):
    spec = env["app"].openapi()
    for name, template in PATHS.items():
        assert template in spec["paths"], name
    from carve.report.ui_pages import render_ui, static_file

    page = render_ui("map", mode="server", token="t")
    assert '"paths": {"datasets": "/datasets"' in page
    js = static_file("ui.js")[0].decode()
    assert not re.search(r"""["']/(datasets|events)\b""", js), "ui.js spells an API path"
    assert url("cluster", {"offset": 0, "limit": 60}, name="a b", cluster=3) == "/datasets/a%20b/clusters/3?offset=0&limit=60"


def test_derive_views_is_one_call_after_clustering_and_a_no_op_when_current(tmp_path: Path):
    from carve.audit.derive import derive_views
    from carve.clustering import neighbours as cn
    from carve.clustering import summary as cs
    from carve.clustering.curate import cluster_catalog
    from carve.storage.root import open_root

    fab = fabricate_root(tmp_path / "root", datasets=("sim",), episodes=6, clusters=False)
    cfg = CarveConfig.model_validate({"root": str(fab.root), "cluster": {"k": 3, "seed": 0}})
    root = open_root(str(fab.root))
    v = cluster_catalog(root, cfg)
    assert cs.read_summary(root, v) is None and cs.read_layout(root, v) is None and not cn.neighbours_is_current(root, v)
    d = derive_views(root, v, cfg.cluster)
    assert d.summary and d.layout and d.neighbours
    files = sorted((fab.root / "clusters" / f"v{v:03d}").glob("*.*"))
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    again = derive_views(root, v, cfg.cluster)
    assert (again.summary, again.layout, again.neighbours) == (None, None, None)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == sha
    # the layout is the PCA fitted on the training sample: every point is the projection of its unit embedding
    lay = cs.read_layout(root, v)
    proj = cs.LayoutProjector.from_dict(cs.read_layout_meta(root, v)["projection"])
    assert lay is not None and lay.num_rows == sum(1 for _ in fab.event_ids)
    assert np.isfinite(proj.components).all()
