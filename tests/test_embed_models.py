"""Real model loading: a tiny open_clip checkpoint saved to disk, and the offline MiniLM weights."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carve.core.config import EmbedConfig
from carve.embedding.embedders import EmbedError, MiniLMEmbedder, make_text_embedder, make_visual_embedder
from carve.embedding.fusion import embedding_dims
from carve.embedding.stage import EmbedStage
from carve.storage.schema import events_to_table, make_event_id

TINY = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, object]:
    """A tiny CLIP config + its randomly initialised weights saved as a checkpoint file."""
    import open_clip
    import torch

    d = tmp_path_factory.mktemp("clip")
    cfg_path = d / "carve-test-tiny-clip.json"
    cfg_path.write_text(json.dumps(TINY))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(1234)
    model = open_clip.create_model("carve-test-tiny-clip")
    model.eval()
    ckpt = d / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    return str(cfg_path), str(ckpt), model


def clip_cfg(tiny_clip, **kw) -> EmbedConfig:
    cfg_path, ckpt, _ = tiny_clip
    return EmbedConfig(visual="open_clip", open_clip_model=cfg_path, open_clip_pretrained=ckpt, batch_size=2, **kw)


def image(kind: int) -> np.ndarray:
    """Three clearly different 40x48 images: red left half, blue stripes, green gradient."""
    a = np.zeros((40, 48, 3), dtype=np.uint8)
    if kind == 0:
        a[:, :24] = (230, 20, 20)
    elif kind == 1:
        a[::4] = (20, 20, 230)
    else:
        a[..., 1] = np.linspace(0, 255, 48, dtype=np.uint8)[None, :]
    return a


def test_open_clip_visual_loads_checkpoint(tiny_clip) -> None:
    import open_clip
    import torch

    _, _, source = tiny_clip
    emb = make_visual_embedder(clip_cfg(tiny_clip))
    assert emb.dim == 24
    imgs = [image(0), image(1), image(2)]
    v = emb.encode(imgs)  # 3 images, batch_size 2 → two batches
    assert v.shape == (3, 24) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.abs(v[0] - v[1]).max() > 1e-3 and np.abs(v[1] - v[2]).max() > 1e-3
    # the weights are the saved ones: same features as the model they came from...
    _, _, preprocess = open_clip.create_model_and_transforms("carve-test-tiny-clip")
    x = torch.stack([preprocess(Image.fromarray(im)) for im in imgs])
    with torch.no_grad():
        ref = source.encode_image(x, normalize=True).numpy()
    np.testing.assert_allclose(v, ref, atol=1e-5)
    # ...and not what a fresh random init gives
    torch.manual_seed(99)
    other = open_clip.create_model("carve-test-tiny-clip").eval()
    with torch.no_grad():
        assert np.abs(other.encode_image(x, normalize=True).numpy() - v).max() > 1e-2


def test_open_clip_text_tower(tiny_clip) -> None:
    emb = make_text_embedder(clip_cfg(tiny_clip, text="open_clip"))
    v = emb.encode(["pick up the red cube", "push the bowl to the left", ""])
    assert v.shape == (3, 24)
    np.testing.assert_allclose(np.linalg.norm(v[:2], axis=1), 1.0, atol=1e-5)
    assert not np.any(v[2])
    assert np.abs(v[0] - v[1]).max() > 1e-3


def test_open_clip_stage_end_to_end(tiny_clip) -> None:
    cfg = clip_cfg(tiny_clip, text="open_clip", weights={"visual": 1.0, "text": 0.5, "motion": 0.5})
    assert embedding_dims(cfg) == {"visual": 24, "text": 24, "motion": 32, "emb": 80}

    def jpeg(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG")
        return buf.getvalue()

    rows = [
        {"event_id": make_event_id("e", i, i + 3), "episode_id": "e", "dataset": "d", "episode_index": 0,
         "event_index": i, "num_events": 3, "start_frame": i, "end_frame": i + 3, "fps": 10.0, "task": "t",
         "caption": f"move {i}", "keyframes": [jpeg(image(i)), jpeg(image((i + 1) % 3))],
         "state": [[0.0, float(i)], [1.0, 2.0], [2.0, 1.0]], "action": [], "gripper": []}
        for i in range(3)
    ]
    out = EmbedStage(cfg)(events_to_table(rows))
    vis = np.asarray(out.column("emb_visual").to_pylist())
    end = np.asarray(out.column("end_emb_visual").to_pylist())
    assert vis.shape == (3, 24)
    np.testing.assert_allclose(end[0], vis[1], atol=1e-4)  # event 0 ends on event 1's start image
    fused = np.asarray(out.column("emb").to_pylist())
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sum(fused[:, :24] ** 2, axis=1), 0.5, atol=1e-4)  # visual share 1 / 2


def test_open_clip_errors_name_the_problem(tmp_path: Path, tiny_clip) -> None:
    cfg_path, _, _ = tiny_clip
    with pytest.raises(EmbedError, match="does not exist"):
        make_visual_embedder(EmbedConfig(visual="open_clip", open_clip_model=cfg_path,
                                         open_clip_pretrained=str(tmp_path / "missing.pt")))
    with pytest.raises(EmbedError, match="open_clip_pretrained is not set"):
        make_visual_embedder(EmbedConfig(visual="open_clip", open_clip_model=cfg_path))
    with pytest.raises(EmbedError, match="unknown open_clip model"):
        embedding_dims(EmbedConfig(visual="open_clip", open_clip_model="no-such-clip"))


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def test_minilm_semantics(minilm: MiniLMEmbedder) -> None:
    v = minilm.encode([
        "the robot picks up the red cube",
        "the gripper grasps and lifts the red block",
        "quarterly revenue grew faster than expected",
    ])
    assert v.shape == (3, 384) and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2


def test_minilm_batching_matches_single(minilm: MiniLMEmbedder) -> None:
    texts = ["push the bowl left", "open the gripper", "move above the tray"]
    batched = MiniLMEmbedder(batch_size=2).encode(texts)
    singles = np.vstack([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, singles, atol=1e-4)


def test_models_are_loaded_once_per_process(tiny_clip, minilm: MiniLMEmbedder) -> None:
    cfg = clip_cfg(tiny_clip, text="open_clip")
    a, b = make_visual_embedder(cfg), make_text_embedder(cfg)
    assert a.clip is b.clip  # one open_clip model serves both towers
    assert MiniLMEmbedder().model is minilm.model
