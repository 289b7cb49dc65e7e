"""The visual descriptor's orientation fold (`ingest.visual._unsigned`) is `np.mod(angle, pi)` value for value.

`_unsigned` replaced `np.mod` in `_gradient_grid` for speed; descriptors feed the written `emb_visual` and
`emb`, so the fold must give the same float32 for every angle `np.arctan2` can return. The full range
([-pi, pi] as float32: 2,157,060,024 values) was checked once by a script; here every float32 within
4,096 ulps of each edge (0, +-pi, the orientation bins' edges), 4 million random ones, and whole
descriptors of random and flat images against the same descriptor computed with `np.mod`.
"""

from __future__ import annotations

import numpy as np
import pytest

from carve.ingest import visual

PI32 = np.float32(np.pi)


def _around(x: np.float32, span: int = 4096) -> np.ndarray:
    """Every float32 within `span` ulps of `x` (both sides), clipped to [-pi, pi]."""
    bits = np.array([x], dtype=np.float32).view(np.int32)[0]
    near = np.arange(int(bits) - span, int(bits) + span + 1, dtype=np.int64)
    if x == 0:  # both zeros and the smallest numbers of either sign
        pos = np.arange(0, span, dtype=np.int32).view(np.float32)
        return np.concatenate([pos, -pos])
    vals = near[(near >= 0) & (near < 2**31)].astype(np.int32).view(np.float32)
    vals = np.concatenate([vals, -vals])
    return vals[np.abs(vals) <= PI32]


def _edges() -> np.ndarray:
    edges = [np.float32(0), PI32, *(np.float32(k * np.pi / 8) for k in range(1, 8)),
             *(np.float32(-k * np.pi / 8) for k in range(1, 8))]
    return np.concatenate([_around(e) for e in edges])


def _random(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hi = int(np.array([PI32]).view(np.int32)[0])
    bits = rng.integers(0, hi + 1, n, dtype=np.int64).astype(np.int32)
    vals = bits.view(np.float32)
    return np.where(rng.random(n) < 0.5, -vals, vals).astype(np.float32)


@pytest.mark.parametrize("angles", [_edges(), _random(4_000_000, 0)], ids=["edges", "random"])
def test_fold_equals_numpy_mod(angles: np.ndarray) -> None:
    want = np.mod(angles, np.pi)
    got = visual._unsigned(angles.copy())
    assert got.dtype == np.float32
    assert np.array_equal(got, want)  # -0.0 == 0.0; every other value bit for bit
    assert np.array_equal(got.view(np.uint32) & 0x7FFFFFFF, want.view(np.uint32) & 0x7FFFFFFF)
    assert (got >= 0).all() and (got <= PI32).all()


def test_edge_values() -> None:
    a = np.array([PI32, -PI32, np.float32(-0.0), np.float32(0.0), np.nextafter(-PI32, 0), np.float32(-1e-30)],
                 dtype=np.float32)
    got = visual._unsigned(a.copy())
    assert got[0] == 0 and got[1] == 0  # fmod(pi, pi) = 0; -pi + pi = 0
    assert got[2] == 0 and got[3] == 0
    assert got[4] == np.float32(np.nextafter(-PI32, 0) + PI32)
    assert got[5] == PI32  # a tiny negative angle rounds up to pi, as np.mod gives it
    assert np.array_equal(got, np.mod(a, np.pi))


def test_descriptors_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, (24, 64, 64, 3), dtype=np.uint8)
    imgs[0] = 128  # flat: no gradient at all
    imgs[1, :, :32] = 0  # one vertical edge: angles of exactly 0 and pi
    imgs[1, :, 32:] = 255
    imgs[2] = imgs[1].transpose(1, 0, 2)
    imgs[3] = imgs[1][:, ::-1]  # the edge the other way: arctan2 gives pi
    got = visual.image_descriptors(imgs)
    monkeypatch.setattr(visual, "_unsigned", lambda a: np.mod(a, np.pi))
    want = visual.image_descriptors(imgs)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
