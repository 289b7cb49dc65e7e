"""Episodes keep their source's own order and numbers (issue 26).

An ACT/ALOHA dataset is a folder of `episode_N.hdf5` files. Carve numbers its episodes by N
(natural order, not alphabetical: `episode_2` before `episode_10`), so that every downstream join
by episode index (truth, annotations, exports) pairs the right recording, and adding a file or
listing the files in another order never renumbers the others.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from carve.ingest.eval_segments import catalog_episodes, evaluate
from carve.ingest.sources import open_source
from carve.ingest.sources.common import file_number, natural_key
from carve.ingest.truth import complete_truth, read_truth

ACT = Path(__file__).resolve().parent / "corpus" / "aloha_hdf5" / "episodes"


def _act_dataset(dst: Path, numbers: list[int]) -> Path:
    """A folder of ACT-format files `episode_<n>.hdf5`, each a copy of one of the corpus's recordings
    (recording n % 4), so every file's content says which recording it holds."""
    dst.mkdir(parents=True)
    for n in numbers:
        shutil.copyfile(ACT / f"episode_{n % 4}.hdf5", dst / f"episode_{n}.hdf5")
    return dst


def test_natural_order_of_names():
    names = ["episode_10.hdf5", "episode_2.hdf5", "episode_1.hdf5", "Episode_3.hdf5", "demo_9", "demo_10", "b", "a"]
    assert sorted(names, key=natural_key) == ["a", "b", "demo_9", "demo_10", "episode_1.hdf5", "episode_2.hdf5",
                                              "Episode_3.hdf5", "episode_10.hdf5"]
    assert [file_number(n) for n in ("episode_12.hdf5", "run3_take07.h5", "nothing.hdf5")] == [12, 7, None]


def test_act_files_are_numbered_by_their_file_number(tmp_path: Path):
    ds = _act_dataset(tmp_path / "act", list(range(14)))
    refs = open_source(str(ds), "hdf5").list_episodes()
    assert [r.episode_index for r in refs] == list(range(14))
    assert [r.locator["file"] for r in refs] == [f"episode_{i}.hdf5" for i in range(14)]


def test_adding_a_file_or_another_listing_order_renumbers_nothing(tmp_path: Path):
    def numbering(ds: Path) -> dict[str, tuple[int, str]]:  # file -> (episode index, episode id in its dataset)
        return {r.locator["file"]: (r.episode_index, r.episode_id.split("/", 1)[1])
                for r in open_source(str(ds), "hdf5", dataset="act").list_episodes()}

    before = numbering(_act_dataset(tmp_path / "a", list(range(12))))
    after = numbering(_act_dataset(tmp_path / "b", [11, 3, 0, 7, 12, 1, 10, 2, 9, 4, 8, 5, 6]))  # another order, +1
    assert after.pop("episode_12.hdf5")[0] == 12
    assert after == before


def test_files_without_distinct_numbers_keep_their_natural_position(tmp_path: Path):
    d = tmp_path / "mixed"
    d.mkdir()
    for name in ("take_b.hdf5", "take_a.hdf5", "take_c.hdf5"):
        shutil.copyfile(ACT / "episode_0.hdf5", d / name)
    refs = open_source(str(d), "hdf5").list_episodes()
    assert [(r.episode_index, r.locator["file"]) for r in refs] == [(0, "take_a.hdf5"), (1, "take_b.hdf5"),
                                                                   (2, "take_c.hdf5")]


@pytest.mark.usefixtures("ray_local")
def test_carve_run_keeps_the_file_numbers_and_every_event_names_its_file(tmp_path: Path):
    import numpy as np
    import pyarrow.parquet as pq

    from carve.core.config import CarveConfig
    from carve.export.lerobot import export_lerobot
    from carve.ingest.sources import load_episode
    from carve.pipeline.run import run_pipeline
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    ds = _act_dataset(tmp_path / "act", list(range(12)))
    cfg = CarveConfig().with_overrides({
        "root": str(tmp_path / "root"), "source": {"uri": str(ds), "format": "hdf5"},
        "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False}, "embed": {"text": "none"},
        "cluster": {"k": 3},
    })
    s = run_pipeline(cfg)
    assert s.episodes_ok == 12
    with open_root(tmp_path / "root") as r:
        eps = {e.episode_index: e for e in r.catalog.episodes()}
        import sqlalchemy as sa

        from carve.storage.catalog import EPISODES

        with r.catalog.reading() as c:
            where = {row.episode_index: (row.source_file, row.source_key)
                     for row in c.execute(sa.select(EPISODES.c.episode_index, EPISODES.c.source_file,
                                                    EPISODES.c.source_key))}
        assert where == {i: (f"episode_{i}.hdf5", "/") for i in range(12)}  # provenance in the catalog too
        rows = read_events(r, columns=["episode_index", "start_frame", "end_frame", "fps", "source_file", "source_key",
                                       "source_start_s", "source_end_s"]).to_pylist()
        export_lerobot(r, tmp_path / "export", codec="h264")
        _, preds, info = catalog_episodes(r)
    assert sorted(eps) == list(range(12))
    # a truth keyed by file number scores the same as one keyed by Carve's index (read back from each
    # episode's provenance); the alphabetical numbering (`episode_10` before `episode_2`) pairs wrong data
    recordings = {e["episode_index"]: e["boundaries"] for e in json.loads((ACT.parent / "truth.json").read_text())}

    def f1(index_to_file: dict[int, int]) -> float:
        entries = [{"episode_index": i, "boundaries": recordings[n % 4]} for i, n in index_to_file.items()]
        path = tmp_path / f"truth_{len(list(tmp_path.glob('truth_*')))}.json"
        path.write_text(json.dumps(entries))
        truth = complete_truth(read_truth(path), info, "the run")
        return evaluate(truth, preds, tol_s=0.1)["overall"]["boundary_f1"]

    by_file = f1({n: n for n in range(12)})
    by_carve = f1({i: file_number(where[i][0]) for i in range(12)})
    alphabetical = sorted(range(12), key=lambda n: f"episode_{n}.hdf5")
    assert by_file == by_carve
    assert f1(dict(enumerate(alphabetical))) < by_file
    for e in rows:  # provenance: the file, the key inside it, the span in source seconds
        assert e["source_file"] == f"episode_{e['episode_index']}.hdf5" and e["source_key"] == "/", e
        assert e["source_start_s"] == pytest.approx(e["start_frame"] / e["fps"])
        assert e["source_end_s"] == pytest.approx(e["end_frame"] / e["fps"])
    side = pq.read_table(next((tmp_path / "export").rglob("carve_events.parquet"))).to_pylist()
    assert side and all(x["source_file"] == f"episode_{x['source_episode_index']}.hdf5" for x in side)
    # episode index N holds the recording of episode_N.hdf5 (a copy of corpus recording N % 4)
    src = {i: load_episode(ref).state for i, ref in
           ((ref.episode_index, ref) for ref in open_source(str(ACT), "hdf5").list_episodes())}
    for ref in open_source(str(ds), "hdf5").list_episodes():
        assert np.array_equal(load_episode(ref).state, src[ref.episode_index % 4]), ref.episode_index


@pytest.mark.usefixtures("ray_local")
def test_task_text_comes_from_tasks_json_or_the_run_when_the_file_has_none(tmp_path: Path):
    """An ACT file without a `task` attribute takes its task from a tasks.json beside it (per file,
    or `*`), else from `carve run --task`; the captions then name the task's object."""
    import json as _json

    from carve.cli.main import main
    from carve.ingest.sources import load_episode
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    ds = _act_dataset(tmp_path / "act", [0, 1, 2])
    refs = open_source(str(ds), "hdf5").list_episodes()
    assert load_episode(refs[0]).task == ""  # the corpus files carry no task attribute
    (ds / "tasks.json").write_text(_json.dumps({"*": "Transfer the red cube from the right arm to the left arm",
                                                "episode_2.hdf5": "Insert the peg into the socket"}))
    tasks = [load_episode(r).task for r in open_source(str(ds), "hdf5").list_episodes()]
    assert tasks == ["Transfer the red cube from the right arm to the left arm"] * 2 + ["Insert the peg into the socket"]
    (ds / "tasks.json").write_text("[1, 2]")
    from carve.core.errors import SourceError

    with pytest.raises(SourceError, match=r"tasks\.json must map"):
        open_source(str(ds), "hdf5").list_episodes()
    (ds / "tasks.json").unlink()
    code = main(["run", "--source", str(ds), "--format", "hdf5", "--root", str(tmp_path / "root"), "--no-shard",
                 "--task", "Transfer the red cube from the right arm to the left arm",
                 "--set", "ray.progress=false", "--set", "ray.num_cpus=2", "--set", "embed.text=none"])
    assert code == 0
    with open_root(tmp_path / "root") as r:
        rows = read_events(r, columns=["task", "caption"]).to_pylist()
    assert rows and all(x["task"] == "Transfer the red cube from the right arm to the left arm" for x in rows)
    assert not any("the object" in x["caption"] for x in rows)
    assert any("the red cube" in x["caption"] for x in rows)
