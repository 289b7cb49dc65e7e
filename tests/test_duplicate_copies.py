"""`quality.duplicates.copies` against the rule written out plainly (its module doc), pair by pair.

The reference below compares every pair of episodes the mean-state prefilter admits, each way,
with `np.interp` per dimension and no reuse or bound: what `copies` did before it reused the
scaled states and signatures, skipped pairs whose matched end states alone put them beyond the
threshold, and built its candidates in blocks. The two must agree exactly (the same copies, the
same originals, distances and spans) on random walks with noisy, trimmed, re-timed and distinct
episodes, at several thresholds.
"""

from __future__ import annotations

import numpy as np
import pytest

from carve.core.config import CheckConfig
from carve.quality import duplicates

POINTS, MAX_TRIM, PREFILTER = 64, 0.1, 0.3


def _sig(x: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    src, dst = np.linspace(0.0, 1.0, len(x)), np.linspace(lo, hi, POINTS)
    return np.stack([np.interp(dst, src, x[:, d]) for d in range(x.shape[1])], axis=1)


def _as_copy(orig: np.ndarray, copy: np.ndarray) -> tuple[float, tuple[float, float]]:
    n = len(orig)
    w = max(2, int(MAX_TRIM * n) + 1)
    i0 = int(np.argmin(np.linalg.norm(orig[:w] - copy[0], axis=1)))
    tail = np.linalg.norm(orig[-w:] - copy[-1], axis=1)
    i1 = n - w + int(np.flatnonzero(tail == tail.min())[-1])  # the last of equally near states
    if i1 - i0 < 3:
        return float("inf"), (0.0, 1.0)
    d = float(np.sqrt(np.mean((_sig(orig[i0 : i1 + 1]) - _sig(copy)) ** 2)))
    return d, (i0 / (n - 1), i1 / (n - 1))


def reference(states: dict[int, np.ndarray], threshold: float) -> dict[int, tuple[int, float, tuple[float, float]]]:
    keys = sorted(states)
    whole = {k: _sig(states[k]) for k in keys}
    scale = np.concatenate([whole[k] for k in keys]).std(axis=0)
    scale[scale < 1e-9] = 1.0
    means = {k: (whole[k] / scale).mean(axis=0) for k in keys}
    out = {}
    for j, kb in enumerate(keys):
        for ka in keys[:j]:
            if not np.sqrt(np.mean((means[ka] - means[kb]) ** 2)) < PREFILTER:
                continue
            a, b = np.nan_to_num(states[ka]) / scale, np.nan_to_num(states[kb]) / scale
            (d_ab, span), (d_ba, _) = _as_copy(a, b), _as_copy(b, a)
            if min(d_ab, d_ba) < threshold:
                out[kb] = (ka, min(d_ab, d_ba), span if d_ab <= d_ba else (0.0, 1.0))
                break
    return out


def _episodes(rng: np.random.Generator) -> dict[int, np.ndarray]:
    d = int(rng.integers(2, 10))
    bases = [np.cumsum(rng.normal(size=(int(rng.integers(20, 200)), d)), axis=0) for _ in range(4)]
    out = {}
    for k in range(int(rng.integers(8, 40))):
        b = bases[int(rng.integers(0, 4))]
        kind = int(rng.integers(0, 4))
        if kind == 0:  # the same recording with sensor noise
            x = b + rng.normal(scale=10 ** rng.uniform(-4, -1), size=b.shape)
        elif kind == 1:  # trimmed by a few frames at each end
            cut = max(1, len(b) // 12)
            x = b[int(rng.integers(0, cut)) : len(b) - int(rng.integers(0, cut))]
        elif kind == 2:  # re-timed by up to 10%
            m = int(len(b) * rng.uniform(0.9, 1.1))
            src, dst = np.linspace(0, 1, len(b)), np.linspace(0, 1, m)
            x = np.stack([np.interp(dst, src, b[:, i]) for i in range(d)], axis=1)
        else:  # another recording
            x = np.cumsum(rng.normal(size=b.shape), axis=0)
        out[k] = x
    return out


@pytest.fixture(params=["scan", "grid"], autouse=True)
def candidates(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the candidates from the scan of all pairs and from the grid."""
    monkeypatch.setattr(duplicates, "GRID_FROM", 10**9 if request.param == "scan" else 0)
    return str(request.param)


@pytest.mark.parametrize("seed", range(12))
def test_copies_agree_with_the_plain_rule(seed: int):
    states = _episodes(np.random.default_rng(seed))
    found_any = 0
    for threshold in (0.005, 0.02, 0.1):
        want = reference(states, threshold)
        got = {k: (c.of, c.distance, c.span) for k, c in
               duplicates.copies(states, CheckConfig(duplicate_distance=threshold)).items()}
        assert got == want, f"seed {seed}, threshold {threshold}"
        found_any += len(want)
    assert found_any > 0  # the draw has copies to find, so agreement is not two empty answers


def test_every_stretch_mean_lies_in_its_episodes_box():
    """`_path_extremes` bounds the signature of every stretch `as_copy` may cut (first frame in the
    first MAX_TRIM, last in the last), point by point, so the box holds every stretch's mean."""
    rng = np.random.default_rng(11)
    for n in (4, 9, 37, 120):
        x = np.cumsum(rng.normal(size=(n, 3)), axis=0)
        mins, maxs = duplicates._path_extremes(x)
        w = max(2, int(MAX_TRIM * n) + 1)
        for i0 in range(w):
            for i1 in range(n - w, n):
                if i1 - i0 < 3:
                    continue
                s = _sig(x[i0 : i1 + 1])
                assert np.all(s >= mins - 1e-9) and np.all(s <= maxs + 1e-9), (n, i0, i1)


def test_the_grid_finds_the_pairs_a_scan_of_all_pairs_finds():
    rng = np.random.default_rng(3)
    xs = [np.cumsum(rng.normal(scale=0.05, size=(int(rng.integers(10, 60)), 4)), axis=0) for _ in range(150)]
    boxes = duplicates._MeanBoxes(xs, np.stack([_sig(x).mean(axis=0) for x in xs]), bound=0.05)
    got = {tuple(p) for p in boxes.pairs().tolist()}
    inside = np.all((boxes.means[None, :, :] >= boxes.lo[:, None, :]) & (boxes.means[None, :, :] <= boxes.hi[:, None, :]),
                    axis=2)  # [a, b]: b's mean in a's box
    want = {(min(a, b), max(a, b)) for a, b in zip(*np.nonzero(inside), strict=True) if a != b}
    assert got == want and 0 < len(want) < 150 * 149 // 2


def test_a_copy_whose_first_rest_moved_up_to_the_threshold_is_still_found():
    """A copy equal to its original but for the rest it starts with, moved along one axis as far as
    it can go with the pair still under the threshold: the end-state filters must keep it (the
    plain rule finds it) and drop it a step further (the plain rule does not). Both episodes rest
    at each end, as teleoperated episodes do (and the last of equally near tail states is taken)."""
    rng = np.random.default_rng(7)
    walk = np.cumsum(rng.normal(size=(80, 3)), axis=0)
    orig = np.concatenate([np.repeat(walk[:1], 15, axis=0), walk, np.repeat(walk[-1:], 15, axis=0)])
    others = {k: np.cumsum(rng.normal(size=(110, 3)), axis=0) for k in range(2, 6)}
    threshold = 0.02
    found_at = []
    for delta in np.geomspace(0.01, 50.0, 80):
        copy = orig.copy()
        copy[:15, 1] += delta
        states = {0: orig, 1: copy, **others}
        want = reference(states, threshold)
        got = {k: (c.of, c.distance, c.span) for k, c in
               duplicates.copies(states, CheckConfig(duplicate_distance=threshold)).items()}
        assert got == want, delta
        found_at.append(1 in want)
    assert found_at[0] and not found_at[-1]  # the sweep crosses the threshold


def test_a_copy_offset_along_a_still_axis_up_to_the_threshold_is_still_found():
    """A copy that is its original moved by a constant offset along a coordinate the original does
    not move in (a calibration offset): its distance is the offset over sqrt(D), so it is a copy up
    to an offset of sqrt(D) x the threshold, which is exactly the mean box's margin there."""
    rng = np.random.default_rng(5)
    orig = np.cumsum(rng.normal(size=(90, 3)), axis=0)
    orig[:, 1] = 2.0  # still along this axis
    others = {k: np.cumsum(rng.normal(size=(90, 3)), axis=0) for k in range(2, 6)}
    threshold = 0.02
    found_at = []
    for rel in np.linspace(0.5, 1.5, 41):  # the offset, in units of the margin sqrt(D) x threshold
        states = {0: orig, 1: orig, **others}
        scale = np.concatenate([_sig(s) for s in states.values()]).std(axis=0)
        copy = orig.copy()
        copy[:, 1] += rel * np.sqrt(3) * threshold * scale[1]
        states[1] = copy
        want = reference(states, threshold)
        got = {k: (c.of, c.distance, c.span) for k, c in
               duplicates.copies(states, CheckConfig(duplicate_distance=threshold)).items()}
        assert got == want, rel
        found_at.append(1 in want)
    assert found_at[0] and not found_at[-1]
