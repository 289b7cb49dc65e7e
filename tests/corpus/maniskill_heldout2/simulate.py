"""Record ManiSkill 3 motion-planning expert episodes of four more tasks (corpus item `maniskill_heldout2`).

Runs in the simulator venv of ../maniskill_heldout (its README: `mani_skill` 3.0.0b21, the Vulkan driver):

    VK_ICD_FILENAMES=... /work/venv-maniskill/bin/python tests/corpus/maniskill_heldout2/simulate.py --out /tmp/msk2-npz

The recording, the sub-goal tracing and the checks are ../maniskill_heldout/simulate.py's, imported from
there unchanged (`CallTracer`, `Recorder`, `run_episode`, `save`, `main`); only the task table differs: the
four shipped solutions that set left unused and that have a verb class (`pull_cube`, `plug_charger`,
`place_sphere`, `pick_cube`; `draw_triangle` and `draw_svg` draw, which no class names). The names follow
the same rules (that module's doc, "Names") and were fixed from the solutions' source before any episode
of these tasks was simulated.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("msk_simulate", HERE.parent / "maniskill_heldout" / "simulate.py")
sim = importlib.util.module_from_spec(_spec)
sys.modules["msk_simulate"] = sim
_spec.loader.exec_module(sim)

# env id -> solution module, instruction, one name per executed planner call in the solution's source order
TASKS: dict[str, dict] = {
    "PullCube-v1": {
        "solution": "pull_cube", "text": "pull the cube back to the goal",
        "calls": [
            "close the gripper",                                  # close_gripper (nothing held: a fist to pull with)
            "reach behind the cube",                              # screw to 5 cm past the cube's far side (+x)
            "pull the cube back to the goal",                     # screw to 5 cm past the goal region's centre
        ],
    },
    "PlugCharger-v1": {
        "solution": "plug_charger", "text": "plug the charger into the receptacle",
        "calls": [
            "reach above the charger",                            # screw to grasp_pose * (0, 0, -0.05)
            "descend to the charger",                             # screw to grasp_pose (tilted 15 degrees)
            "grasp the charger",                                  # close_gripper
            "carry the charger in front of the receptacle",       # screw to the pre-insertion pose (refine 0)
            "carry the charger in front of the receptacle",       # the same pose, refine_steps=5
            "plug the charger into the receptacle",               # screw to the insertion pose (5 cm on)
        ],
    },
    "PlaceSphere-v1": {
        "solution": "place_sphere", "text": "place the sphere in the bin",
        "calls": [
            # (dry-run screws first: the search for a reachable grasp angle; no step, no phase)
            "reach above the sphere",                             # screw to grasp_pose * (0, 0, -0.05)
            "descend to the sphere",                              # screw to grasp_pose
            "grasp the sphere",                                   # close_gripper
            "lift the sphere",                                    # screw up 0.1 m
            "place the sphere in the bin",                        # screw to the lift pose + (goal in the bin - sphere)
            "release the sphere",                                 # open_gripper
        ],
    },
    # the first set's reserve, never simulated there (its README): the same names
    "PickCube-v1": sim.TASKS["PickCube-v1"],
}
DEFAULT_TASKS = "PullCube-v1,PlugCharger-v1,PlaceSphere-v1,PickCube-v1"

if __name__ == "__main__":
    sim.TASKS = TASKS  # run_episode reads the task table from its module
    sys.exit(sim.main(["--tasks", DEFAULT_TASKS, *sys.argv[1:]]))
