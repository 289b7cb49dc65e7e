"""run_episode's noise_seed / plan_seed: defaults unchanged, re-recordings and same-scene demos."""

from __future__ import annotations

import numpy as np
import pytest

from carve.sim.tasks import SimEpisode, run_episode

KW = {"fps": 12, "size": 32, "render": False, "operator_noise": 0.3}


def _same_signals(a: SimEpisode, b: SimEpisode) -> bool:
    return a.state.shape == b.state.shape and np.array_equal(a.state, b.state) and np.array_equal(a.action, b.action)


@pytest.mark.parametrize("task", ["pick_place", "push"])
def test_explicit_noise_seed_equal_to_seed_changes_nothing(task: str) -> None:
    base = run_episode(task, 5, **KW)
    same = run_episode(task, 5, noise_seed=5, **KW)
    assert _same_signals(base, same)
    assert [(p.name, p.start, p.end) for p in base.phases] == [(p.name, p.start, p.end) for p in same.phases]


def test_new_noise_seed_is_a_rerecording_of_the_same_scene_and_plan() -> None:
    base = run_episode("pick_place", 5, **KW)
    again = run_episode("pick_place", 5, noise_seed=1005, **KW)
    assert again.task == base.task
    for name, pos in base.objects.items():  # the objects start where they did
        np.testing.assert_allclose(again.objects[name][0], pos[0], atol=1e-6)
    assert not _same_signals(base, again)
    assert [p.name for p in again.phases] == [p.name for p in base.phases]


def test_plan_seed_gives_another_demo_in_the_same_scene() -> None:
    a = run_episode("pick_place", 5, plan_seed=1, **KW)
    b = run_episode("pick_place", 5, plan_seed=2, **KW)
    other_scene = run_episode("pick_place", 6, plan_seed=1, **KW)
    assert a.task == b.task
    for name, pos in a.objects.items():
        np.testing.assert_allclose(b.objects[name][0], pos[0], atol=1e-6)
    assert not _same_signals(a, b)
    # the place spot is planned: where the object ends up differs between the two demos
    name = next(iter(a.objects))
    assert np.linalg.norm(a.objects[name][-1, :2] - b.objects[name][-1, :2]) > 1e-4
    assert any(not np.allclose(other_scene.objects[n][0], a.objects[n][0]) for n in a.objects if n in
               other_scene.objects) or other_scene.task != a.task
