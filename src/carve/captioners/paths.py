"""Path geometry for the phase labeller (`captioners.phases`): what the shape of one arm's path says.

Everything here reads the arm's path `x` (frames x motion columns, in rad or m, smoothed; local
frames of one episode) and its speed `sp`, with the run's pause speed, moving speed and waypoint
error (`ingest.kinematics.thresholds` / `move_speed`: `waypoint_error_rad` / `_m`, a smaller
motion is no waypoint of the segmenter). It knows no phase: `phases` decides what each stretch,
piece, turn or leg is; `label_path` only writes the codes it is given.

- **Motion bouts** (`motion_bouts`): stretches above the pause speed, around at least a moment at
  the moving speed (a dip shorter than a pause does not end one). `move_off`: where an arm that
  held after a gripper transition moves off (the segmenter's own `motion_starts` rule, robust to
  tremor during the hold). `final_rest`: the arm's final rest, from its last frame at the moving
  speed and from where it stays within the waypoint error of its final pose.
- **Polyline pieces** (`label_path`): a least-squares k-piece polyline through the path (sampled
  evenly in time, at most `FIT_POINTS` points) gives the pieces; each piece's direction is its
  mean velocity away from the blends (over its central half), and every frame goes, in order, to
  the piece whose direction its velocity follows: where two blended motions overlap, the split
  falls where the new one becomes the faster (the directions re-estimated `DIRECTION_ROUNDS`
  times); a hold at a corner belongs to the piece it ends. With enough candidate corners (the
  segmenter's event boundaries) the corners are those through which the polyline fits best.
- **Sharp turns** (`sharp_turns`, `last_turn`): the path turns by more than `TURN_DEG` between
  its motion `TURN_S` before and after a frame (stops left out, so a stop at the corner does not
  hide the turn); `last_turn` is the last one with at least `ACT_SHARE` of the path after it.
- **Legs** between turns: one `returns` (heads back to the start pose: cosine >= `RETURN_COS`,
  ending nearer than `RETURN_SHARE` of its start's distance), `rises` (points up within
  `RISE_COS`, never more than the waypoint error below where it started), `stays` (within the waypoint error of
  its start), `comes_back` (its distance from where it left falls by more than the waypoint error
  and `COME_BACK_SHARE` of its farthest); `leg_kind` (rise, fall, level or still); `lift_off`: a
  path that ends by rising off what it worked, and where the action before it started.
"""

from __future__ import annotations

import itertools

import numpy as np

from carve.core.config import SegmentConfig
from carve.ingest.kinematics import motion_starts, runs

RETURN_COS = 0.7  # a last leg heading back to the start pose within this cosine ...
RETURN_SHARE = 0.5  # ... and ending nearer the start than this share of its own start's distance: a retreat
COME_BACK_SHARE = 0.2  # a hand that left a part and comes back by this share of its farthest distance: re-approach
RISE_COS = 0.5  # a last leg whose displacement points up within this cosine (>= 30 deg above level) rises
TURN_DEG = 40.0  # the path turns by more than this between ...
TURN_S = 0.1  # ... its motion over this long before and after a frame: a sharp turn
ACT_SHARE = 0.2  # a turn with less than this share of the path after it is no start of the action
FIT_POINTS = 64  # samples of a path (evenly in time) for the polyline fit
DIRECTION_ROUNDS = 2  # piece directions re-estimated from the previous split


def run_spans(mask: np.ndarray) -> list[tuple[int, int]]:
    starts, ends = runs(mask)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def motion_bouts(sp: np.ndarray, fps: float, pause: float, fast: float, cfg: SegmentConfig) -> list[tuple[int, int]]:
    """Stretches of real motion: above the pause speed, around at least a moment at the moving speed."""
    hold = max(2, round(cfg.pause_min_s * fps))
    merged: list[list[int]] = []
    for a, e in run_spans(sp > pause):  # a dip shorter than a pause does not end the motion (hesitations)
        if merged and a - merged[-1][1] < hold:
            merged[-1][1] = e
        else:
            merged.append([a, e])
    need = max(1, hold // 2)
    return [(a, e) for a, e in merged if int(np.sum(sp[a:e] >= fast)) >= need]


def move_off(sp: np.ndarray, fps: float, t: int, until: int, fast: float, cfg: SegmentConfig) -> int | None:
    """After a gripper transition at t: where the arm, having held, moves off (`ingest.kinematics.motion_starts`,
    the segmenter's rule: robust to tremor during the hold); None when it never held or never moves off."""
    if sp.size == 0 or not np.any(sp):
        return None
    found = motion_starts(sp, fps, [t], [until], fast, cfg)
    return found[0][0] if found else None


def _polyline_fit(p: np.ndarray, pieces: int) -> list[int]:
    """Indices of the inner vertices of the least-squares `pieces`-piece polyline through points `p`
    (vertices on the points; cost: squared distances of the points to their piece)."""
    m = len(p)
    cost = np.full((m, m), np.inf)
    for i in range(m - 1):
        d = p[i + 1 :] - p[i]  # d[j]: from point i to point i+1+j (a chord, and a point between)
        g = d @ d.T  # g[q, j] = d[q] . d[j]
        vv = np.diag(g).copy()
        t = np.clip(np.divide(g, vv[None, :], out=np.zeros_like(g), where=vv[None, :] > 1e-18), 0.0, 1.0)
        res = vv[:, None] - 2.0 * t * g + t * t * vv[None, :]  # squared distance of point q to chord j
        res = np.maximum(res, 0.0) * np.tri(len(d), k=-1).T  # only the points strictly inside (q < j)
        cost[i, i + 1 :] = res.sum(axis=0)
    best = np.full((pieces + 1, m), np.inf)
    arg = np.zeros((pieces + 1, m), int)
    best[0, 0] = 0.0
    for k in range(1, pieces + 1):
        # best[k, j] = min over i < j of best[k - 1, i] + cost[i, j] (cost is inf for i >= j); argmin
        # takes the first minimum, as a scan over i < j would
        tot = best[k - 1][:, None] + cost
        arg[k] = np.argmin(tot, axis=0)
        best[k] = tot[arg[k], np.arange(m)]
    corners, j = [], m - 1
    for k in range(pieces, 1, -1):
        j = int(arg[k, j])
        corners.append(j)
    return sorted(corners)


def _direction_split(v: np.ndarray, dirs: list[np.ndarray]) -> list[int]:
    """Frames where pieces 2..k start: the ordered split that maximises the velocity's projection on
    the direction of its piece (a frame belongs to the piece whose direction it follows; on a flat
    stretch, a hold, the later split wins, so a hold stays with the piece it ends)."""
    m, k = len(v), len(dirs)
    score = np.stack([v @ u for u in dirs], axis=1)  # (m, k)
    cs = np.vstack([np.zeros((1, k)), np.cumsum(score, axis=0)])  # prefix sums, (m + 1, k)
    # best[j][t]: the best value of pieces 0..j covering frames [0, t) ; piece j ends at t
    best = np.full((k, m + 1), -np.inf)
    arg = np.zeros((k, m + 1), int)
    best[0] = cs[:, 0]
    for j in range(1, k):
        # piece j covers [a, t): value = best[j-1][a] + cs[t, j] - cs[a, j], with 1 <= a < t
        f = best[j - 1] - cs[:, j]
        run_val, run_arg = -np.inf, 0
        for t in range(1, m + 1):
            a = t - 1
            if a >= 1 and f[a] >= run_val - 1e-12:  # ties: the later split
                run_val, run_arg = f[a], a
            if run_val > -np.inf:
                best[j, t], arg[j, t] = run_val + cs[t, j], run_arg
    out, t = [], m
    for j in range(k - 1, 0, -1):
        t = int(arg[j, t])
        out.append(t)
    return sorted(out)


def _polyline_corners(x: np.ndarray, sp: np.ndarray, pause: float, pieces: int) -> list[int] | None:
    """Frames (local) where pieces 2..k of the path `x` start, or None when it hardly moves.

    A least-squares k-piece polyline through the path (sampled evenly in time, at most
    `FIT_POINTS` points) gives the pieces; each piece's direction is its mean velocity over its
    central half (away from the blends), and every frame then goes to the piece whose direction
    its velocity follows, in order (`_direction_split`): where two blended motions overlap, the
    split falls where the new one becomes the faster. The directions are re-estimated from that
    split (`DIRECTION_ROUNDS`). A corner inside a hold is moved to the hold's end (the hold belongs
    to the piece it ends).
    """
    m = x.shape[0]
    if x.ndim != 2 or x.shape[1] == 0 or m < pieces + 1:
        return None
    moving = sp > pause
    if int(moving.sum()) < 2:
        return None
    idx = np.unique(np.linspace(0, m - 1, min(m, FIT_POINTS)).round().astype(int))
    if len(idx) < pieces + 1:
        return None
    verts = [0, *(int(idx[c]) for c in _polyline_fit(x[idx], pieces)), m - 1]
    v = np.where(moving[:, None], np.gradient(x, axis=0), 0.0)
    corners = verts[1:-1]
    for _ in range(DIRECTION_ROUNDS):
        dirs = []
        for a, b in itertools.pairwise(verts):  # the mean velocity of the piece's central half
            d = v[a + (b - a) // 4 : b - (b - a) // 4 + 1].sum(axis=0)
            nd = float(np.linalg.norm(d))
            dirs.append(d / nd if nd > 1e-12 else d)
        corners = _direction_split(v, dirs)
        verts = [0, *corners, m - 1]
    out = []
    for c in corners:
        while 0 < c < m and not moving[c]:  # inside a hold: to its end
            c += 1
        out.append(min(c, m))
    return out


def _chord_cost(x: np.ndarray, i: int, j: int) -> float:
    """Squared distances of the frames x[i..j] to the chord x[i] -> x[j]."""
    pts = x[i : j + 1] - x[i]
    v = x[j] - x[i]
    vv = float(v @ v)
    t = np.clip(pts @ v / vv, 0.0, 1.0) if vv > 1e-18 else np.zeros(len(pts))
    return float(np.sum((pts - t[:, None] * v) ** 2))


def _corners_among(x: np.ndarray, cands: list[int], pieces: int) -> list[int]:
    """The `pieces` - 1 of the candidate frames through which the polyline fits the path best."""
    m = len(x)
    best, out = np.inf, cands[: pieces - 1]
    for combo in itertools.combinations(cands, pieces - 1):
        verts = [0, *combo, m - 1]
        cost = sum(_chord_cost(x, a, b) for a, b in itertools.pairwise(verts))
        if cost < best:
            best, out = cost, list(combo)
    return out


def label_path(labels: np.ndarray, x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int,
                names: tuple[int, ...], fallback: int, cands: list[int] | None = None) -> None:
    """Label frames [a, e) with `names`, one per piece of the path's polyline fit (corners among
    the candidate frames `cands` when there are enough of them, else free)."""
    if e <= a:
        return
    if len(names) == 1:
        labels[a:e] = names[0]
        return
    inside = sorted({c - a for c in cands or [] if a < c < e - 1})
    if len(inside) >= len(names) - 1 and x.shape[1]:
        corners: list[int] | None = _corners_among(x[a:e], inside, len(names))
    else:
        corners = _polyline_corners(x[a:e], sp[a:e], pause, len(names)) if e - a >= 3 else None
    if corners is None:
        labels[a:e] = fallback
        return
    edges = [0, *corners, e - a]
    for name, lo, hi in zip(names, edges[:-1], edges[1:], strict=True):
        labels[a + lo : a + max(lo, hi)] = name


def final_rest(x: np.ndarray, sp: np.ndarray, fast: float, err: float) -> int:
    """The first frame of the arm's final rest: after its last clearly fast frame, and from where it
    stays within `err` (the waypoint error: a smaller motion is no waypoint) of its final pose."""
    n = len(x)
    if n == 0 or x.ndim != 2 or x.shape[1] == 0:
        return n
    far = np.flatnonzero(np.linalg.norm(x - x[-1], axis=1) > err)
    moving = np.flatnonzero(sp >= fast)
    return max(int(far[-1]) + 1 if len(far) else 0, int(moving[-1]) + 1 if len(moving) else 0)


def returns(x: np.ndarray, a: int, s: int, e: int) -> bool:
    """Whether the leg [s, e) of the path heads back to the pose the arm started from at a (a retreat):
    its displacement points at the start (cosine >= `RETURN_COS`) and it ends nearer the start than
    `RETURN_SHARE` of the distance its own start had."""
    if x.shape[1] == 0 or not a <= s < e - 1:
        return False
    d, back = x[e - 1] - x[s], x[a] - x[s]
    nd, nb = float(np.linalg.norm(d)), float(np.linalg.norm(back))
    if nd < 1e-12 or nb < 1e-12:
        return False
    return float(d @ back) / (nd * nb) >= RETURN_COS and float(np.linalg.norm(x[e - 1] - x[a])) < RETURN_SHARE * nb


def rises(x: np.ndarray, up: int | None, s: int, e: int, err: float) -> bool:
    """Whether the leg [s, e) of the path lifts the hand off upward: its displacement points up (the
    height column `up`) with cosine >= `RISE_COS`, and it never comes down more than `err` (the
    waypoint error) below where it started. False without a height column."""
    if up is None or x.shape[1] == 0 or not 0 <= s < e - 1:
        return False
    d = x[e - 1] - x[s]
    nd = float(np.linalg.norm(d))
    return nd > 1e-12 and float(d[up]) / nd >= RISE_COS and float(np.min(x[s:e, up])) >= float(x[s, up]) - err


def sharp_turns(x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int, fps: float,
           share: float = ACT_SHARE) -> list[int]:
    """The frames in [a, e) where the path turns sharply, the sharpest frame of each turn, in order: by
    more than `TURN_DEG` between its motion over the `TURN_S` of moving frames before and after it
    (frames slower than the pause speed are left out, so a stop at the corner does not hide the turn),
    with at least `share` of the stretch's path still to come. Where the hand reaches a part and starts
    to work it the motion turns (over, onto, then along the part's own axis); a part's own motion (a
    slide, a door's arc) turns gradually."""
    if x.shape[1] == 0 or e - a < 3:
        return []
    idx = a + np.flatnonzero(sp[a:e] > pause)
    w = max(1, round(TURN_S * fps))
    if len(idx) < 2 * w + 1:
        return []
    y = x[idx]
    steps = np.linalg.norm(np.diff(y, axis=0), axis=1)
    left = np.concatenate([np.cumsum(steps[::-1])[::-1], [0.0]])  # path length from each moving frame on
    total = float(left[0])
    if total <= 0:
        return []
    cos_max = float(np.cos(np.radians(TURN_DEG)))
    found: list[int] = []
    best, prev = None, -2
    for t in range(w, len(idx) - w):
        if left[t] < share * total:
            break
        d1, d2 = y[t] - y[t - w], y[t + w] - y[t]
        n1, n2 = float(np.linalg.norm(d1)), float(np.linalg.norm(d2))
        if n1 < 1e-12 or n2 < 1e-12:
            continue
        cos = float(d1 @ d2) / (n1 * n2)
        if cos >= cos_max:
            continue
        if t != prev + 1:  # a new turn: its sharpest frame counts
            best = None
            found.append(-1)
        if best is None or cos < best[0]:
            best = (cos, t)
        prev = t
        found[-1] = int(idx[best[1]])
    return found


def last_turn(x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int, fps: float) -> int | None:
    """The frame in [a, e) where the path last turns sharply (`sharp_turns`) with at least `ACT_SHARE` of the
    stretch's path still to come; None when it never does."""
    found = sharp_turns(x, sp, pause, a, e, fps)
    return found[-1] if found else None


def lift_off(x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int, fps: float, up: int,
              err: float) -> tuple[int, int] | None:
    """(the action's start, the hand's lift-off) when the path ends by rising off a part it worked. The
    sharp turns (`sharp_turns`, any share of the path after them) cut the path into legs; the lift-off is the
    first turn of the last run of legs that rise (`rises`) with the hand never coming down again below
    where the leg started (a rise that turns on its way up lifts off at its first turn; legs of the hand
    hovering after it are passed over). The action starts at the last sharp turn before it (any share of
    the path after it: the lift-off bounds the action, however short), from which the leg up to the
    lift-off does not rise. None when the path ends otherwise."""
    turns = sharp_turns(x, sp, pause, a, e, fps, share=0.0)
    if not turns:
        return None
    off = None
    for r, nxt in reversed(list(zip(turns, [*turns[1:], e], strict=True))):
        if rises(x, up, r, nxt, err) and float(np.min(x[r:e, up])) >= float(x[r, up]) - err:
            off = r
        elif off is not None:
            break
    if off is None:
        return None
    before = [t for t in turns if t < off]  # the lift-off ends the action: no share of the path need follow
    c0 = before[-1] if before else None
    return (c0, off) if c0 is not None and not rises(x, up, c0, off, err) else None


def leg_kind(x: np.ndarray, up: int, s: int, t: int, err: float) -> str:
    """"rise", "fall", "level" or "still": how the leg [s, t) of the path goes, by its displacement (up or
    down within `RISE_COS`; "still" when it moves no more than the waypoint error `err`)."""
    d = x[t - 1] - x[s]
    nd = float(np.linalg.norm(d))
    if nd <= err:
        return "still"
    if float(d[up]) / nd >= RISE_COS:
        return "rise"
    return "fall" if float(-d[up]) / nd >= RISE_COS else "level"


def stays(x: np.ndarray, s: int, e: int, err: float) -> bool:
    """Whether the path [s, e) stays within the waypoint error `err` of x[s] (no leg of its own: the
    segmenter keeps no waypoint for a smaller motion)."""
    return x.shape[1] > 0 and 0 <= s < e and float(np.max(np.linalg.norm(x[s:e] - x[s], axis=1))) <= err


def comes_back(x: np.ndarray, s: int, e: int, err: float) -> bool:
    """Whether the hand, having left at s the place where it worked a part, heads back to it before e: its
    distance from x[s] falls from its farthest by more than the waypoint error `err` and by at least
    `COME_BACK_SHARE` of that farthest distance. Such an excursion lies between two interactions with
    the part (the hand lifted off to come at it again): a re-approach (**reach**), not a retreat, which
    is the motion after the episode's last interaction, away from the part."""
    if x.shape[1] == 0 or not 0 <= s < e - 1:
        return False
    d = np.linalg.norm(x[s:e] - x[s], axis=1)
    far = float(d.max())
    back = far - float(d[-1])
    return back > err and back >= COME_BACK_SHARE * far

