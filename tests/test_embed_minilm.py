"""The plain-torch MiniLM (`carve.embedding.minilm`) against sentence-transformers, and what a run imports.

The lean model must give, for each text alone, the very floats `SentenceTransformer.encode([text],
normalize_embeddings=True)` gives on one torch thread (as the embed step runs it), or the event
rows of a run would change with the encoder. A `carve run` on the in-process executor must not
import sentence-transformers, transformers or Ray (checked in a fresh interpreter's `sys.modules`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from carve.embedding import minilm
from carve.embedding.embedders import MiniLMEmbedder, minilm_path
from carve.embedding.minilm import LeanMiniLM, supports
from carve.embedding.stage import one_torch_thread

TEXTS = [
    "pick up the red cube",
    "  open the gripper  ",  # surrounding blanks: sentence-transformers strips them
    "Move ABOVE the tray, then lower; release!",
    "push the bowl left and rotate it 90 degrees (slowly)",
    "déplacer la tasse vers la gauche",
    "grasp the mug 🙂 and lift",
    "x",
    "the robot " + " ".join(f"reaches toward object{i} and grasps it" for i in range(80)),  # > 256 tokens: truncated
]


@pytest.fixture(scope="module")
def reference() -> object:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path(), device="cpu")


def test_the_offline_weights_are_run_by_the_lean_model() -> None:
    assert supports(minilm_path())
    assert isinstance(MiniLMEmbedder().model, LeanMiniLM)


def test_lean_vectors_are_bit_identical_to_sentence_transformers(reference: object) -> None:
    lean = LeanMiniLM.load(minilm_path())
    with one_torch_thread():
        for text in TEXTS:
            ref = reference.encode([text], batch_size=32, convert_to_numpy=True,  # type: ignore[attr-defined]
                                   normalize_embeddings=True, show_progress_bar=False)[0]
            got = lean.encode_one(text)
            assert got.dtype == np.float32 and got.shape == ref.shape == (384,)
            assert np.array_equal(got, ref), f"{text[:40]!r}: max |diff| {np.abs(got - ref).max()}"


def _same_length_texts(lean: LeanMiniLM) -> list[str]:
    """Captions in groups of one token length: one group larger than `minilm.BATCH`, groups of
    2 and 3, and single texts, shuffled so that a group's texts are not neighbours."""
    import random

    verbs = ["pick", "push", "pull", "lift", "place", "press", "turn", "slide", "grasp", "insert", "wipe", "pour"]
    objects = ["cube", "bowl", "mug", "drawer", "door", "button", "peg", "lid", "plate", "cloth", "cup", "block"]
    many = [f"{v} the {o}" for v in verbs for o in objects]  # 144 texts
    by_len: dict[int, list[str]] = {}
    for t in many:
        by_len.setdefault(len(lean.tokenizer.encode(t).ids), []).append(t)
    big = max(by_len.values(), key=len)
    assert len(big) > minilm.BATCH  # the largest group needs more than one batch
    texts = [*big, "retreat from the red cube", "retreat from the blue cube", "retreat from the tray",
             "move the peg to the hole with the left arm", *TEXTS]
    random.Random(3).shuffle(texts)
    return texts


def test_texts_encoded_together_get_the_floats_of_each_text_alone(reference: object) -> None:
    """`encode_many` batches the texts of one token length without padding: every row must be the
    vector sentence-transformers gives that text alone, whatever the group's size (BATCH and more,
    2, 3, 1) or order."""
    lean = LeanMiniLM.load(minilm_path())
    texts = _same_length_texts(lean)
    with one_torch_thread():
        got = lean.encode_many(texts)
        for text, row in zip(texts, got, strict=True):
            ref = reference.encode([text], batch_size=32, convert_to_numpy=True,  # type: ignore[attr-defined]
                                   normalize_embeddings=True, show_progress_bar=False)[0]
            assert np.array_equal(row, ref), f"{text[:40]!r}: max |diff| {np.abs(row - ref).max()}"
    assert MiniLMEmbedder().batch_invariant


def test_embedder_keeps_empty_texts_zero_and_batches_equal_singles() -> None:
    emb = MiniLMEmbedder(batch_size=2)
    texts = ["push the bowl left", "", None, "open the gripper", "   "]
    out = emb.encode(texts)
    assert out.shape == (5, 384)
    assert not out[[1, 2, 4]].any()
    singles = np.vstack([emb.encode([t]) for t in texts])
    assert np.array_equal(out, singles)  # each text alone, whatever its batch-mates


def test_a_directory_the_lean_model_does_not_run_falls_back_to_sentence_transformers(tmp_path: Path) -> None:
    d = tmp_path / "minilm-cls"
    shutil.copytree(minilm_path(), d)
    pooling = d / "1_Pooling" / "config.json"
    cfg = json.loads(pooling.read_text())
    cfg.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(cfg))
    assert not supports(d)
    emb = MiniLMEmbedder(model_path=str(d))
    assert not isinstance(emb.model, LeanMiniLM)
    v = emb.encode(["pick up the red cube"])
    assert v.shape == (1, 384) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_embedding_a_caption_does_not_import_sentence_transformers() -> None:
    mods = _modules_after("from carve.embedding.embedders import MiniLMEmbedder\n"
                          "assert MiniLMEmbedder().encode(['open the gripper']).shape == (1, 384)")
    assert "torch" in mods
    assert not {"sentence_transformers", "transformers", "sklearn", "ray"} & mods


def test_a_local_carve_run_imports_neither_ray_nor_sentence_transformers(tmp_path: Path) -> None:
    """The whole `carve run` (auto executor, small dataset: in this process), MiniLM text embedding on."""
    from test_e2e_pipeline import write_folder_episode

    src = tmp_path / "raw" / "toy"
    src.mkdir(parents=True)
    for i in range(2):
        write_folder_episode(src, f"ep_{i}", seed=i, frames=60)
    code = ("import sys\nfrom carve.cli.main import main\n"
            f"sys.argv = ['carve', 'run', '--source', {str(src)!r}, '--format', 'folder', '--root', "
            f"{str(tmp_path / 'root')!r}, '--json', '--set', 'ray.progress=false']\n"
            "rc = main()\nassert rc == 0, rc")
    mods = _modules_after(code)
    assert "carve.embedding.minilm" in mods and "torch" in mods  # the text model did run
    assert not {"ray", "sentence_transformers", "transformers"} & mods
