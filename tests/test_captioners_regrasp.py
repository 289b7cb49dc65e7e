"""Rule 10 of `captioners.phases` (kinematic-v9): a re-grasp, on hand-built signals whose phases are known by
construction: the fingers close on an object (frames 5-9), the hand works or carries it (from 10), the
fingers are forced part-way open (10-14) and close on it again (14-19) while the hand comes to rest, or
while it keeps moving at speed."""

from __future__ import annotations

import numpy as np
import pytest

from carve.captioners import phases as P
from carve.captioners.signals import regrasps

N, FPS = 30, 20.0


def _opening(peak: float = 0.65) -> np.ndarray:
    g = np.full(N, 0.3)
    g[:5] = 1.0
    g[5:10] = np.linspace(1.0, 0.3, 5)  # the grasp closes
    g[10:15] = np.linspace(0.3, peak, 5)  # forced part-way open by what the fingers hold
    g[14:20] = np.linspace(peak, 0.3, 6)  # and closed on it again
    return g


def _labels(held_label: int = P.ACT) -> tuple[np.ndarray, np.ndarray]:
    labels = np.full(N, held_label)
    labels[:5], labels[5:10] = P.REACH, P.GRASP
    held = np.zeros(N, bool)
    held[5:] = True
    return labels, held


def _speed(slows: bool) -> np.ndarray:
    sp = np.full(N, 0.5)
    sp[:5] = 0.3
    if slows:
        sp[15:20] = np.linspace(0.4, 0.1, 5)
        sp[20:] = 0.05
    else:
        sp[15:] = 0.6
    return sp


def test_the_closing_found_is_the_second_one_from_the_peak_to_where_the_fingers_stop() -> None:
    _, held = _labels()
    assert regrasps(_opening(), held) == [(14, 20)]


@pytest.mark.parametrize("held_label", [P.ACT, P.MOVE, P.LIFT, P.PLACE])
def test_fingers_closing_again_as_the_hand_comes_to_rest_are_a_grasp(held_label: int) -> None:
    labels, held = _labels(held_label)
    P._label_regrasps(labels, _opening(), held, FPS, _speed(slows=True))
    want = np.full(N, held_label)
    want[:5], want[5:10], want[14:20] = P.REACH, P.GRASP, P.GRASP
    assert labels.tolist() == want.tolist()


def test_fingers_settling_while_the_hand_keeps_moving_the_object_are_that_motion() -> None:
    labels, held = _labels()
    before = labels.copy()
    P._label_regrasps(labels, _opening(), held, FPS, _speed(slows=False))
    assert labels.tolist() == before.tolist()


def test_a_small_wobble_of_the_fingers_is_no_regrasp() -> None:
    labels, held = _labels()
    before = labels.copy()
    P._label_regrasps(labels, _opening(peak=0.45), held, FPS, _speed(slows=True))  # 0.15 of a 0.7 travel
    assert labels.tolist() == before.tolist()


def test_an_opening_and_closing_while_nothing_is_held_is_no_regrasp() -> None:
    labels, held = _labels()
    held[:] = False
    before = labels.copy()
    P._label_regrasps(labels, _opening(), held, FPS, _speed(slows=True))
    assert labels.tolist() == before.tolist()


def test_reach_and_release_frames_are_never_relabelled() -> None:
    labels, held = _labels()
    labels[14:20] = P.RELEASE
    P._label_regrasps(labels, _opening(), held, FPS, _speed(slows=True))
    assert (labels[14:20] == P.RELEASE).all()


def test_without_motion_columns_the_closing_alone_decides() -> None:
    labels, held = _labels()
    P._label_regrasps(labels, _opening(), held, FPS, np.zeros(N))
    assert (labels[14:20] == P.GRASP).all() and (labels[10:14] == P.ACT).all()
