"""bench.caption_contact_signals: its AUC on hand-counted pairs, its phase runs, and its resistance sign."""

from __future__ import annotations

import numpy as np
import pytest

from bench.caption_contact_signals import auc, episode_signals, phase_runs


def test_auc_counts_ties_half() -> None:
    # pairs (pos, neg): 3>1, 3>2, 2>1 win; 2=2 ties: (3 + 0.5) / 4
    assert auc(np.array([3.0, 2.0]), np.array([1.0, 2.0])) == pytest.approx(0.875)
    assert auc(np.array([5.0, 6.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(1.0)
    assert auc(np.array([1.0]), np.array([2.0, 3.0])) == pytest.approx(0.0)


def test_auc_of_nothing_is_nan() -> None:
    assert np.isnan(auc(np.array([]), np.array([1.0])))


def test_phase_runs() -> None:
    assert phase_runs(["reach", "reach", "push", None, None, "reach"]) == [
        (0, 2, "reach"), (2, 3, "push"), (3, 5, None), (5, 6, "reach")]


class _Ep:
    fps = 10.0
    cameras: list[str] = []

    def __init__(self) -> None:
        # commanded 1 cm per frame along x throughout; achieved 1 cm for 3 frames, then 0.2 cm (pushing)
        self.action = np.tile([0.01, 0.0, 0.0], (7, 1))
        x = np.cumsum([0.0, 0.01, 0.01, 0.01, 0.002, 0.002, 0.002])
        self.state = np.c_[x, np.zeros(7), np.zeros(7)]


def test_resistance_is_higher_where_the_hand_falls_short() -> None:
    r = episode_signals(_Ep())["resistance"]
    assert r[:3] == pytest.approx([-1.0] * 3)
    assert r[3:6] == pytest.approx([-0.2] * 3)
    assert np.isnan(r[6])  # no next frame


def test_hand_ratio_counts_only_moving_commanded_frames() -> None:
    from bench.caption_contact_signals import hand_ratio

    ep = _Ep()
    ep.action = ep.action.copy()
    ep.action[1] = 0.0  # no command at frame 1: its ratio does not count
    ratio, counts = hand_ratio(ep)
    assert ratio[0] == pytest.approx(1.0) and ratio[3] == pytest.approx(0.2)
    # frame 0 has no previous frame (speed unknown), frame 1 no command, frame 6 no next frame
    assert counts.tolist() == [False, False, True, True, True, True, False]
