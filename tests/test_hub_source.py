"""`hf://datasets/<org>/<name>[@<revision>]` sources against a loopback server that speaks the
Hub's HTTP protocol (tests/hub_server.py), reached through `HF_ENDPOINT`.

The served repo is `tests/fixtures/lerobot/v30`, a LeRobot v3.0 dataset written by lerobot 0.4.4
(two AV1 cameras, three episodes sharing one video file per camera). Checked: the revision is
pinned to a commit (a branch that moves does not move a run), episodes read over the Hub equal
those of the local copy, only the byte ranges needed are fetched and each at most once (across
processes too), a local Hugging Face cache is used and `HF_HUB_OFFLINE=1` works over it, the token
is sent but never shown, and a gated repo (401/403), a private or missing repo, a missing revision,
a repo that is not a LeRobot dataset and a server that fails mid-file give clear errors. The
slow test runs `carve run` over the Hub and over the local folder and compares the event rows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hub_server import HubServer

from carve.core.errors import CarveError, SourceError
from carve.ingest.sources import load_episode, open_source
from carve.storage import hub

REPO = Path(__file__).resolve().parents[1]
V30 = REPO / "tests" / "fixtures" / "lerobot" / "v30"
TOP = "videos/observation.images.top/chunk-000/file-000.mp4"
WRIST = "videos/observation.images.wrist/chunk-000/file-000.mp4"
METAWORLD = REPO / "tests" / "corpus" / "metaworld" / "dataset"
CORNER = "videos/observation.images.corner/chunk-000/file-000.mp4"
BEHIND = "videos/observation.images.behind_gripper/chunk-000/file-000.mp4"


@pytest.fixture(scope="module")
def server() -> Iterator[HubServer]:
    srv = HubServer()
    srv.add_repo("lerobot/v30", V30)
    srv.add_repo("lab/gated", V30, gated=True)
    srv.add_repo("lab/private", V30, private=True)
    srv.add_repo("lab/metaworld", METAWORLD)
    srv.repos["lab/gated"].granted_tokens.add("hf_granted")
    srv.repos["lab/private"].granted_tokens.add("hf_granted")
    yield srv
    srv.close()


@pytest.fixture()
def hf(server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """The environment of a run against `server`: online, a fresh block cache, 4 KiB blocks."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("CARVE_HUB_CACHE", str(tmp_path / "blocks"))
    monkeypatch.setenv("CARVE_HUB_BLOCK_KB", "4")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(hub, "HUB_MAX_ATTEMPTS", 3)
    server.reset_counts()
    server._fail.clear()
    return server


def _served_ranges(srv: HubServer, path: str) -> list[tuple[int, int]]:
    out = []
    for method, p, rng in srv.requests:
        if method == "GET" and p.endswith("/" + path) and rng:
            a, b = rng.removeprefix("bytes=").split("-")
            out.append((int(a), int(b)))
    return sorted(out)


def test_uri_forms():
    p = hub.parse_hub_uri("hf://datasets/lerobot/pusht@v2.1/meta/info.json")
    assert (p.repo_id, p.revision, p.path, p.name) == ("lerobot/pusht", "v2.1", "meta/info.json", "pusht")
    assert hub.parse_hub_uri("hf://datasets/lerobot/pusht").revision is None
    assert hub.parse_hub_uri("hf://datasets/a/b@refs%2Fpr%2F3").revision == "refs/pr/3"
    for bad, why in [("hf://models/a/b", "a model repo"), ("hf://datasets/a", "expected hf://datasets"),
                     ("hf://spaces/a/b", "a space repo")]:
        with pytest.raises(hub.HubError, match=why):
            hub.parse_hub_uri(bad)


def test_episodes_over_the_hub_equal_the_local_copy_pinned_to_a_commit(hf: HubServer):
    sha = hf.repos["lerobot/v30"].refs["main"]
    src = open_source("hf://datasets/lerobot/v30")
    assert src.uri == f"hf://datasets/lerobot/v30@{sha}" and src.revision == sha and src.dataset == "v30"
    assert src.format == "lerobot" and src.requested_uri == "hf://datasets/lerobot/v30"
    local = open_source(str(V30))
    refs, lrefs = src.list_episodes(), local.list_episodes()
    assert [r.episode_index for r in refs] == [r.episode_index for r in lrefs]
    assert all(r.source_uri == src.uri for r in refs)
    for ref, lref in zip(refs, lrefs, strict=True):
        assert {k: v for k, v in ref.locator.items()} == lref.locator
        ep, lep = load_episode(ref), load_episode(lref)
        assert ep.task == lep.task and ep.cameras == lep.cameras and ep.state_names == lep.state_names
        np.testing.assert_array_equal(ep.state, lep.state)
        np.testing.assert_array_equal(ep.action, lep.action)
        for cam in ep.cameras:
            idx = [0, ep.length // 2, ep.length - 1]
            np.testing.assert_array_equal(ep.frames(cam, idx), lep.frames(cam, idx))
    # every file request named the commit, never the branch
    assert all(f"/resolve/{sha}/" in p for m, p, _ in hf.requests if "/resolve/" in p)
    # the fingerprint is the content's: the same on a second listing
    assert [r.fingerprint for r in open_source(src.uri).list_episodes()] == [r.fingerprint for r in refs]


def test_a_branch_that_moves_does_not_move_a_pinned_source(hf: HubServer, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    srv = HubServer()
    try:
        first = srv.add_repo("lab/moving", V30)
        srv.add_repo("lab/moving", V30, branch="v3.0")
        monkeypatch.setenv("HF_ENDPOINT", srv.endpoint)
        src = open_source("hf://datasets/lab/moving@main")
        refs = src.list_episodes()
        changed = tmp_path / "changed"
        shutil.copytree(V30, changed)
        (changed / "README.md").write_text("a new commit\n")
        second = srv.add_repo("lab/moving", changed)  # main moves on
        assert srv.repos["lab/moving"].refs["main"] == second != first
        ep = load_episode(refs[0])
        ep.frames(ep.cameras[0], [0])
        assert all(f"/resolve/{first}/" in p for m, p, _ in srv.requests if "/resolve/" in p)
        assert open_source("hf://datasets/lab/moving").revision == second
        tag = open_source("hf://datasets/lab/moving@v3.0")
        assert tag.revision == srv.repos["lab/moving"].refs["v3.0"]
    finally:
        srv.close()


def test_only_needed_ranges_are_fetched_and_each_byte_once(hf: HubServer, tmp_path: Path):
    # one episode of 24 (Meta-World, lerobot-written): a part of the shared video file, none of the other camera's
    mw = hf.repos["lab/metaworld"]
    cam = "observation.images.corner"
    one = load_episode(open_source("hf://datasets/lab/metaworld", camera=cam).list_episodes()[5], camera=cam)
    one.frames(cam, None)
    corner = len(mw.commits[mw.refs["main"]][CORNER].data)
    assert 0 < hf.served[CORNER] < 0.3 * corner and BEHIND not in hf.served
    # the run's quality gate looks at the selected camera only
    from carve.core.config import CheckConfig, SegmentConfig
    from carve.quality.check import check_episode

    check_episode(one, CheckConfig(), SegmentConfig())
    assert BEHIND not in hf.served and one.selected_cameras == [cam] and len(one.cameras) == 2
    hf.reset_counts()
    size = {p: len(f.data) for p, f in hf.repos["lerobot/v30"].commits[hf.repos["lerobot/v30"].refs["main"]].items()}
    refs = open_source("hf://datasets/lerobot/v30", camera="observation.images.top").list_episodes()
    for ref in refs:
        ep = load_episode(ref, camera="observation.images.top")
        ep.frames("observation.images.top", None)
    # a second process reading everything again, on the same disk cache: nothing is fetched twice
    code = ("from carve.ingest.sources import open_source, load_episode\n"
            "from huggingface_hub import constants; constants.HF_HUB_OFFLINE = False\n"
            "for r in open_source('hf://datasets/lerobot/v30').list_episodes():\n"
            "    ep = load_episode(r)\n"
            "    [ep.frames(c, None) for c in ep.cameras]\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=REPO, timeout=300)
    for path, n in hf.served.items():
        assert n <= size[path], (path, n, size[path])
        ranges = _served_ranges(hf, path)
        assert all(b0 > a1 for (_, a1), (b0, _) in itertools.pairwise(ranges)), (path, ranges)
    assert hf.bytes_served <= sum(size.values())


def test_the_token_is_sent_and_never_shown(hf: HubServer, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(SourceError, match=r"lab/gated.*gated \(HTTP 401\).*HF_TOKEN") as e401:
        open_source("hf://datasets/lab/gated")
    monkeypatch.setenv("HF_TOKEN", "hf_not_granted")
    with pytest.raises(SourceError, match=r"gated \(HTTP 403\)") as e403:
        open_source("hf://datasets/lab/gated")
    assert "hf_not_granted" not in str(e403.value) + str(e401.value)
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    src = open_source("hf://datasets/lab/gated")
    ep = load_episode(src.list_episodes()[0])
    assert ep.frames(ep.cameras[0], [0]).shape[0] == 1
    assert "Bearer hf_granted" in hf.auth_headers
    assert "hf_granted" not in repr(src.__dict__) + str(src.list_episodes()[0].to_row())


def test_private_missing_and_non_lerobot_repos_and_missing_revisions(hf: HubServer, tmp_path: Path):
    with pytest.raises(SourceError, match=r"dataset repo lab/private not found \(HTTP 401\).*HF_TOKEN"):
        open_source("hf://datasets/lab/private")
    with pytest.raises(SourceError, match=r"dataset repo lab/nothing not found"):
        open_source("hf://datasets/lab/nothing")
    with pytest.raises(SourceError, match=r"revision 'no-such-branch' not found"):
        open_source("hf://datasets/lerobot/v30@no-such-branch")
    assert ("GET", "/api/datasets/lerobot/v30/revision/no-such-branch", None) in hf.requests
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "README.md").write_text("# not a robot dataset\n")
    (plain / "data.csv").write_text("a,b\n1,2\n")
    hf.add_repo("lab/plain", plain)
    with pytest.raises(SourceError, match=r"lab/plain at [0-9a-f]{40} is not a LeRobot dataset"):
        open_source("hf://datasets/lab/plain")
    with pytest.raises(SourceError, match="not format 'hdf5'"):
        open_source("hf://datasets/lerobot/v30", "hdf5")


def test_a_server_failing_mid_file_is_retried_then_named(hf: HubServer):
    refs = open_source("hf://datasets/lerobot/v30").list_episodes()
    hf.fail_mid_file(TOP, 1)  # one cut: the retry reads it
    ep = load_episode(refs[0], camera="observation.images.top")
    assert ep.frames("observation.images.top", [0]).shape[0] == 1
    assert len([r for r in hf.requests if r[1].endswith(TOP) and r[0] == "GET"]) >= 2
    hf.fail_mid_file(WRIST, -1)  # always cut (the wrist camera was not read yet)
    with pytest.raises(CarveError) as e:
        load_episode(refs[1])
    msg = str(e.value)
    assert "repo lerobot/v30" in msg and f"file {WRIST}" in msg and "tried 3 times" in msg
    assert "peer closed connection" in msg or "bytes" in msg


def test_a_local_cache_is_used_and_offline_mode_works_over_it(hf: HubServer, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants, snapshot_download

    sha = hf.repos["lerobot/v30"].refs["main"]
    folder = snapshot_download("lerobot/v30", repo_type="dataset", endpoint=hf.endpoint)
    assert folder.endswith(sha)
    hf.reset_counts()
    src = open_source("hf://datasets/lerobot/v30")  # online: files come from the cache
    for ref in src.list_episodes():
        ep = load_episode(ref)
        ep.frames(ep.cameras[1], [0])
    assert hf.bytes_served == 0
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    hf.reset_counts()
    off = open_source("hf://datasets/lerobot/v30")
    assert off.revision == sha
    refs = off.list_episodes()
    assert [r.episode_index for r in refs] == [0, 1, 2]
    ep = load_episode(refs[2])
    assert ep.frames(ep.cameras[0], [0]).shape[0] == 1
    assert hf.requests == []
    with pytest.raises(SourceError, match="HF_HUB_OFFLINE is set and revision 'other' is not in the local"):
        open_source("hf://datasets/lerobot/v30@other")


# -- the whole run ---------------------------------------------------------------------------------
SETTINGS = ["--set", "ray.num_cpus=2", "--set", "ray.object_store_memory_mb=256", "--set", "ray.progress=false",
            "--set", "cluster.k=2", "--set", "shard.rows_per_shard=16"]


def _carve(*args: str, env: dict[str, str]) -> str:
    r = subprocess.run([sys.executable, "-m", "carve", *args], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, f"carve {' '.join(args)} -> {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r.stdout


@pytest.mark.slow
def test_carve_run_over_the_hub_gives_the_local_runs_events_and_fetches_the_repo_once(server: HubServer,
                                                                                      tmp_path: Path):
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    server.reset_counts()
    local_copy = tmp_path / "v30"  # the local copy carries the repo's name, as the dataset's name
    shutil.copytree(V30, local_copy)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CARVE_HUB"))}
    env = {**base, "HF_ENDPOINT": server.endpoint, "HF_HOME": str(tmp_path / "hf"), "CARVE_HUB_BLOCK_KB": "8",
           "HF_HUB_OFFLINE": "0"}
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(_carve, "run", "--source", str(local_copy), "--root", str(tmp_path / "local"),
                            *SETTINGS, env=base),
                pool.submit(_carve, "run", "--source", "hf://datasets/lerobot/v30", "--root", str(tmp_path / "hub"),
                            *SETTINGS, env=env)]
        for j in jobs:
            j.result()
    repo = server.repos["lerobot/v30"]
    sha = repo.refs["main"]
    assert server.bytes_served <= 1.2 * repo.size, (server.bytes_served, repo.size, server.served)
    local, remote = open_root(str(tmp_path / "local")), open_root(str(tmp_path / "hub"))
    try:
        (ds,) = remote.catalog.datasets()
        assert ds["name"] == "v30" and ds["source_uri"] == f"hf://datasets/lerobot/v30@{sha}"
        ev_local = read_events(local).sort_by("event_id")
        ev_hub = read_events(remote).sort_by("event_id")
        assert ev_hub.num_rows == ev_local.num_rows > 0
        assert set(ev_hub.column("source_uri").to_pylist()) == {f"hf://datasets/lerobot/v30@{sha}"}
        # row for row, all but source_uri (the local run's is a path); source_file/source_key are the same
        assert ev_hub.drop_columns(["source_uri"]).equals(ev_local.drop_columns(["source_uri"]))
        # a second run skips every episode and fetches nothing more
        before = server.bytes_served
        out = _carve("run", "--source", "hf://datasets/lerobot/v30", "--root", str(tmp_path / "hub"), *SETTINGS,
                     env=env)
        assert "3 already ingested" in out and server.bytes_served == before
        # export bridge: a curated slice of a Hub dataset becomes a LeRobot dataset (videos stream-copied
        # from the pinned commit through the same block cache)
        _carve("export", "--root", str(tmp_path / "hub"), "--format", "lerobot", "--out", str(tmp_path / "export"),
               env=env)
        from carve.ingest.sources import load_episode, open_source

        refs = open_source(str(tmp_path / "export"), "lerobot").list_episodes()
        assert len(refs) == 3 and all(load_episode(r).length > 0 for r in refs)
    finally:
        local.close()
        remote.close()
