"""EmbedStage over event tables (descriptor visual + MiniLM text), descriptors, motion, fusion, errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from carve.core.config import EmbedConfig
from carve.embedding.embedders import DescriptorEmbedder, EmbedError, make_text_embedder, make_visual_embedder
from carve.embedding.fusion import embedding_dims, fuse
from carve.embedding.motion import motion_descriptor
from carve.embedding.stage import EmbedStage
from carve.ingest import visual
from carve.ingest.visual import DESCRIPTOR_DIM, image_descriptors
from carve.storage.schema import EVENT_SCHEMA, conform, events_to_table, make_event_id

RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (48, 40), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(color, dtype=np.float32) + rng.normal(0, 6, (size[1], size[0], 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def lift(n: int = 12, noise: float = 0.0, seed: int = 0) -> tuple[list, list, list]:
    """Closed gripper, the end effector rises in z."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)[:, None]
    state = np.hstack([np.full_like(t, 0.3), np.full_like(t, 0.1), 0.05 + 0.2 * t, np.zeros_like(t)])
    state += rng.normal(0, noise, state.shape)
    action = np.vstack([state[1:], state[-1:]])
    return state.tolist(), action.tolist(), [0.05] * n


def push(n: int = 12, noise: float = 0.0, seed: int = 0) -> tuple[list, list, list]:
    """Open gripper low over the table, the end effector slides in x."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)[:, None]
    state = np.hstack([0.2 + 0.25 * t, np.full_like(t, 0.1), np.full_like(t, 0.03), np.ones_like(t)])
    state += rng.normal(0, noise, state.shape)
    action = np.vstack([state[1:], state[-1:]])
    return state.tolist(), action.tolist(), [0.95] * n


def event_row(i: int, keyframes: list[bytes], caption: str, motion: tuple[list, list, list]) -> dict:
    state, action, gripper = motion
    return {
        "event_id": make_event_id("ep0", i * 10, i * 10 + len(state)),
        "episode_id": "ep0",
        "dataset": "sim",
        "episode_index": 0,
        "event_index": i,
        "num_events": 5,
        "start_frame": i * 10,
        "end_frame": i * 10 + len(state),
        "fps": 12.0,
        "task": "put the red cube in the tray",
        "caption": caption,
        "keyframes": keyframes,
        "state": state,
        "action": action,
        "gripper": gripper,
    }


def cos(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def stage() -> EmbedStage:
    return EmbedStage(EmbedConfig(batch_size=2))


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rows = [
        event_row(0, [jpeg(RED, seed=1), jpeg(GREEN, seed=2), jpeg(BLUE, seed=3)], "lift the red cube", lift()),
        event_row(1, [jpeg(BLUE, seed=3), jpeg(BLUE, seed=4), jpeg(BLUE, seed=5)], "push the blue block", push()),
        event_row(2, [], "raise the red cube up", lift(n=9, noise=0.002, seed=7)),  # no keyframes
        event_row(3, [jpeg(RED, seed=6)], "", push(n=15)),  # one keyframe, empty caption
    ]
    return events_to_table(rows)


@pytest.fixture(scope="module")
def embedded(stage: EmbedStage, table: pa.Table) -> pa.Table:
    return stage(table)


def col(t: pa.Table, name: str) -> list:
    return t.column(name).to_pylist()


def test_stage_adds_all_columns_with_recorded_dims(embedded: pa.Table, table: pa.Table) -> None:
    dims = embedding_dims(EmbedConfig())
    assert dims["visual"] == DESCRIPTOR_DIM and dims["text"] == 384 and dims["motion"] == 32
    assert dims["emb"] == dims["visual"] + dims["text"] + dims["motion"]
    for name, key in [("emb_visual", "visual"), ("end_emb_visual", "visual"), ("emb_text", "text"),
                      ("emb_motion", "motion"), ("emb", "emb")]:
        assert embedded.schema.field(name).type == pa.list_(pa.float32())
        assert all(len(v) == dims[key] for v in col(embedded, name)), name
    # the original columns are untouched and the table still conforms to schema v1
    assert col(embedded, "caption") == col(table, "caption")
    assert conform(embedded).schema.equals(EVENT_SCHEMA)
    norms = np.linalg.norm(np.asarray(col(embedded, "emb"), dtype=np.float64), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_start_and_end_keyframes_are_embedded_separately(embedded: pa.Table) -> None:
    vis, end = col(embedded, "emb_visual"), col(embedded, "end_emb_visual")
    # event 0 starts red and ends blue; event 1 starts with that same blue JPEG
    assert cos(vis[0], end[0]) < 0.9
    np.testing.assert_allclose(end[0], vis[1], atol=1e-6)
    # one keyframe only: start and end are the same frame
    np.testing.assert_allclose(vis[3], end[3], atol=1e-6)
    # red start frames are closer to each other than to a blue start frame
    assert cos(vis[0], vis[3]) > cos(vis[0], vis[1])


def test_missing_keyframes_give_zero_visual_and_are_counted(embedded: pa.Table, stage: EmbedStage) -> None:
    assert not np.any(col(embedded, "emb_visual")[2]) and not np.any(col(embedded, "end_emb_visual")[2])
    assert stage.stats["missing_keyframes"] >= 1
    assert np.isclose(np.linalg.norm(col(embedded, "emb")[2]), 1.0, atol=1e-5)  # still fused from text + motion


def test_empty_caption_gives_zero_text(embedded: pa.Table, stage: EmbedStage) -> None:
    text = np.asarray(col(embedded, "emb_text"))
    assert not np.any(text[3])
    np.testing.assert_allclose(np.linalg.norm(text[:3], axis=1), 1.0, atol=1e-5)
    assert stage.stats["empty_captions"] >= 1


def test_motion_embedding_separates_lift_from_push(embedded: pa.Table) -> None:
    m = col(embedded, "emb_motion")
    assert cos(m[0], m[2]) > cos(m[0], m[1]) + 0.2  # two lifts (different length, noise) vs a push
    assert cos(m[1], m[3]) > cos(m[1], m[0]) + 0.2  # two pushes vs a lift


def test_motion_descriptor_function() -> None:
    a = motion_descriptor(*lift(), dim=24)
    b = motion_descriptor(*lift(n=20, noise=0.003, seed=3), dim=24)
    c = motion_descriptor(*push(n=20, noise=0.003, seed=3), dim=24)
    assert a.shape == (24,) and a.dtype == np.float32
    assert np.isclose(np.linalg.norm(a), 1.0, atol=1e-5)
    assert cos(a, b) > cos(a, c)
    assert not np.any(motion_descriptor([], [], [], dim=24))  # no frames → zeros, not NaN


def test_descriptor_distinguishes_red_from_blue() -> None:
    emb = make_visual_embedder(EmbedConfig(visual="descriptor"))
    assert isinstance(emb, DescriptorEmbedder) and emb.dim == DESCRIPTOR_DIM
    v = emb.encode([jpeg(RED, seed=1), jpeg(RED, size=(64, 64), seed=9), jpeg(BLUE, seed=1)])
    assert v.shape == (3, DESCRIPTOR_DIM)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.2


def test_descriptor_rows_do_not_depend_on_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (48, 40, 3), dtype=np.uint8),
        np.full((64, 64, 3), 90, np.uint8),  # flat: no gradients
        rng.integers(0, 256, (30, 70), dtype=np.uint8),  # grey
        rng.integers(0, 256, (20, 20, 4), dtype=np.uint8),  # RGBA
        rng.normal(120, 80, (33, 33, 3)),  # float, clipped
        rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
    ]
    whole = image_descriptors(images)
    one_by_one = np.concatenate([image_descriptors([im]) for im in images])
    monkeypatch.setattr(visual, "_CHUNK_PIXELS", 2 * 64 * 64)  # chunks of two images
    chunked = image_descriptors(images)
    assert whole.shape == (6, DESCRIPTOR_DIM) and whole.dtype == np.float32
    assert whole.tobytes() == one_by_one.tobytes() == chunked.tobytes()
    assert np.isfinite(whole).all()
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    assert not np.any(whole[1, 72 + 48 : 72 + 48 + 128])  # the flat image's gradient block is zero
    frames = np.stack([images[0], images[0][::-1]])
    assert image_descriptors(frames).tobytes() == image_descriptors(list(frames)).tobytes()


def test_descriptor_cell_sums_round_like_row_major_pixel_sums() -> None:
    """The vectorised cell sums add a cell's pixels in row-major order, like a plain reshape-sum
    (the float32 rounding, and so every embedding written before, stays the same)."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    f = rgb.astype(np.float32) / 255.0
    assert visual._cell_sum(f).tobytes() == f.reshape(5, 4, 16, 4, 16, 3).sum(axis=(2, 4)).tobytes()
    gray = (f @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, :, 1:-1] = gray[:, :, 2:] - gray[:, :, :-2]
    gy[:, 1:-1, :] = gray[:, 2:, :] - gray[:, :-2, :]
    mag = np.hypot(gx, gy)
    b = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * 8).astype(np.int64), 7)
    onehot = np.zeros((*gray.shape, 8), dtype=np.float32)
    np.put_along_axis(onehot, b[..., None], mag[..., None], axis=-1)
    reference = np.sqrt(onehot.reshape(5, 4, 16, 4, 16, 8).sum(axis=(2, 4))).reshape(5, -1)
    assert visual._gradient_grid(gray).tobytes() == reference.tobytes()


def test_fuse_weights_are_similarity_shares() -> None:
    rng = np.random.default_rng(0)
    parts = {"visual": rng.normal(size=(2, 8)), "text": rng.normal(size=(2, 5)), "motion": rng.normal(size=(2, 3))}
    w = {"visual": 2.0, "text": 1.0, "motion": 0.5}
    e = fuse(parts, w)
    assert e.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    total = sum(w.values())
    np.testing.assert_allclose(np.sum(e[:, :8] ** 2, axis=1), w["visual"] / total, atol=1e-5)
    np.testing.assert_allclose(np.sum(e[:, 13:] ** 2, axis=1), w["motion"] / total, atol=1e-5)
    expected = sum(w[k] * cos(parts[k][0], parts[k][1]) for k in parts) / total
    assert math.isclose(float(e[0] @ e[1]), expected, abs_tol=1e-5)
    # weight 0 drops a part; a disabled (d=0) part is skipped
    e0 = fuse({**parts, "text": np.zeros((2, 0))}, {"visual": 0.0, "motion": 1.0})
    np.testing.assert_allclose(e0, parts["motion"] / np.linalg.norm(parts["motion"], axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(ValueError, match="unknown parts"):
        fuse(parts, {"vision": 1.0})


def test_stage_weights_and_disabled_parts(table: pa.Table) -> None:
    cfg = EmbedConfig(visual="none", text="none", weights={"visual": 1.0, "motion": 1.0})
    dims = embedding_dims(cfg)
    assert dims == {"visual": 0, "text": 0, "motion": 32, "emb": 32}
    out = EmbedStage(cfg)(table)
    assert col(out, "emb_visual") == [None] * table.num_rows
    np.testing.assert_allclose(np.asarray(col(out, "emb")), np.asarray(col(out, "emb_motion")), atol=1e-6)


def test_nan_input_raises_naming_the_event(stage: EmbedStage) -> None:
    state, action, gripper = lift()
    state[4][2] = float("nan")
    bad = events_to_table([event_row(7, [jpeg(RED)], "lift", (state, action, gripper))])
    eid = bad.column("event_id")[0].as_py()
    with pytest.raises(EmbedError, match=rf"event {eid} of episode ep0: .*motion.*state has NaN/inf .*frame\(s\) \[4\]"):
        stage(bad)


class _NaNVisual:
    """A visual embedder whose model diverged: returns NaN for the second image it sees."""

    name = "nan-visual"
    dim = 4

    def encode(self, items: list) -> np.ndarray:
        out = np.ones((len(items), self.dim), dtype=np.float32)
        out[min(2, len(items) - 1)] = np.nan
        return out


def test_nan_embedding_raises_naming_the_event(table: pa.Table) -> None:
    st = EmbedStage(EmbedConfig(text="none"))
    st._visual = _NaNVisual()
    st.dims = {**st.dims, "visual": 4}
    eid = table.column("event_id")[1].as_py()  # images: row0 start/end, row1 start (index 2) ...
    with pytest.raises(EmbedError, match=f"event {eid} of episode ep0: visual embedding has NaN/inf"):
        st(table)


def test_corrupt_keyframe_raises_naming_the_event(stage: EmbedStage) -> None:
    bad = events_to_table([event_row(8, [b"not a jpeg"], "lift", lift())])
    eid = bad.column("event_id")[0].as_py()
    with pytest.raises(EmbedError, match=f"event {eid}.*keyframe"):
        stage(bad)


def test_text_embedder_factory_minilm_handles_empty() -> None:
    emb = make_text_embedder(EmbedConfig(text="minilm"))
    v = emb.encode(["pick up the cube", "", None])
    assert v.shape == (3, emb.dim) and emb.dim == 384
    assert np.any(v[0]) and not np.any(v[1]) and not np.any(v[2])


class CountingText:
    """A text embedder that records every batch it is asked to encode; a text's vector depends on
    the text and on how many texts share its batch (as a batched model's floats may)."""

    name, dim = "counting", 3

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, items: list[str]) -> np.ndarray:
        self.batches.append(list(items))
        return np.array([[len(t), sum(map(ord, t)) % 97, len(items)] for t in items], dtype=np.float32)


def test_each_distinct_caption_is_embedded_once_and_alone(table: pa.Table) -> None:
    """Captions repeat heavily: a worker embeds each distinct text once, on its own, so its
    vector is the same whatever block or batch it came in."""
    s = EmbedStage(EmbedConfig(text="minilm"))
    fake = CountingText()
    s._text = fake
    s.dims = {**s.dims, "text": fake.dim}
    rows = table.to_pylist()
    repeated = events_to_table([{**rows[0], "event_id": f"r{i}", "caption": c}
                                for i, c in enumerate(["lift", "push", "lift", "lift", ""])])
    first = np.asarray(col(s(repeated), "emb_text"))
    assert sorted(b[0] for b in fake.batches) == ["", "lift", "push"]
    assert all(len(b) == 1 for b in fake.batches)
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(first[0], [4, (108 + 105 + 102 + 116) % 97, 1])
    again = events_to_table([{**rows[0], "event_id": "z", "caption": "lift"}])
    np.testing.assert_array_equal(np.asarray(col(s(again), "emb_text"))[0], first[0])
    assert len(fake.batches) == 3 and s.stats["texts_embedded"] == 3
