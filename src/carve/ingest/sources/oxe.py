"""Open X-Embodiment (RLDS) layouts: which features are the state, the action, the cameras and the
task, and what each column is called. The one place these name mappings live.

`LAYOUTS` lists the common OXE builds by their TFDS name and the features that identify them;
`find_layout(name, keys)` picks the first layout for the dataset name (else the first whose
`signature` features the build has) whose features the build has. A build no layout covers
is mapped by the generic rules in `carve.ingest.sources.rlds`: every numeric observation vector
is state, `steps/action` (or the numeric leaves under it) is the action, and the column names
come from the feature's description (`"... consists of [6x end-effector state, 1x gripper]"`,
`description_names`) or from the feature's own name.

Names follow Carve's conventions so the segmenter finds the arm's motion and gripper columns
(ingest/arms.py): Cartesian positions are `x`, `y`, `z`, orientations `roll`/`pitch`/`yaw` or
`quat_*`, joints `joint_N`, deltas `dx`/`droll`, the gripper `gripper` (its opening: a state
feature recorded as closedness, DROID's `gripper_position`, is read as 1 - v). Keys are relative to
`steps/`. fps is the dataset's control rate (RLDS builds do not record it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

XYZ_RPY = ("x", "y", "z", "roll", "pitch", "yaw")
DELTA_XYZ_RPY = ("dx", "dy", "dz", "droll", "dpitch", "dyaw")
DEFAULT_FPS = 10.0  # the control rate assumed for a build no layout names


@dataclass(frozen=True)
class Layout:
    """How one OXE build maps onto an episode: (feature key under `steps/`, column names) parts."""

    name: str
    datasets: tuple[str, ...]  # TFDS dataset names this layout is for
    state: tuple[tuple[str, tuple[str, ...]], ...]
    action: tuple[tuple[str, tuple[str, ...]], ...]
    language: tuple[str, ...]  # text features, in order of preference (the first non-empty is the task)
    fps: float
    robot: str
    signature: tuple[str, ...] = ()  # features that identify the layout in a build of another name
    # state features recorded as 0 open .. 1 closed: read as the opening 1 - v (Carve's grippers are
    # higher = more open), so the segmenter and the captions see grasps as grasps
    closed: tuple[str, ...] = ()

    @property
    def keys(self) -> set[str]:
        return {k for k, _ in self.state} | {k for k, _ in self.action}


def _joints(n: int) -> tuple[str, ...]:
    return tuple(f"joint_{i}" for i in range(n))


LAYOUTS: tuple[Layout, ...] = (
    # BridgeData V2 as released by its authors (rail-berkeley bridge_dataset): end-effector state and a
    # delta end-effector action with an absolute gripper command; cameras image_0..image_3
    Layout(
        name="bridge_dataset", datasets=("bridge_dataset", "bridge_orig"),
        state=(("observation/state", (*XYZ_RPY, "gripper")),),
        action=(("action", (*DELTA_XYZ_RPY, "gripper")),),
        language=("language_instruction",), fps=5.0, robot="widowx",
    ),
    # Bridge as converted into the OXE mixture (RT-1 style action dict)
    Layout(
        name="bridge_oxe", datasets=("bridge",),
        state=(("observation/state", (*XYZ_RPY, "gripper")),),
        action=(("action/world_vector", DELTA_XYZ_RPY[:3]), ("action/rotation_delta", DELTA_XYZ_RPY[3:]),
                ("action/open_gripper", ("gripper",))),
        language=("observation/natural_language_instruction",), fps=5.0, robot="widowx",
    ),
    # DROID 1.0: joint, Cartesian and gripper state (gripper_position 0 open .. 1 closed); the action is
    # "[6x joint velocities, 1x gripper position]"; cameras exterior_image_{1,2}_left, wrist_image_left
    Layout(
        name="droid", datasets=("droid", "droid_100"),
        state=(("observation/joint_position", _joints(7)), ("observation/gripper_position", ("gripper",)),
               ("observation/cartesian_position", XYZ_RPY)),
        action=(("action", (*(f"joint_velocity_{i}" for i in range(6)), "gripper")),),
        language=("language_instruction", "language_instruction_2", "language_instruction_3"),
        fps=15.0, robot="franka", closed=("observation/gripper_position",),
        signature=("observation/joint_position", "observation/cartesian_position", "observation/gripper_position"),
    ),
    # RT-1 (fractal20220817_data): tool pose (position + quaternion), gripper_closed; an action dict
    Layout(
        name="fractal", datasets=("fractal20220817_data",),
        state=(("observation/base_pose_tool_reached", ("x", "y", "z", "quat_w", "quat_x", "quat_y", "quat_z")),
               ("observation/gripper_closed", ("gripper_closed",))),
        action=(("action/world_vector", DELTA_XYZ_RPY[:3]), ("action/rotation_delta", DELTA_XYZ_RPY[3:]),
                ("action/gripper_closedness_action", ("gripper",))),
        language=("observation/natural_language_instruction",), fps=3.0, robot="google_robot",
    ),
)

# the control rate of OXE builds that the generic rules map (no layout above)
FPS = {"taco_play": 15.0, "jaco_play": 10.0, "berkeley_autolab_ur5": 5.0, "roboturk": 10.0, "viola": 20.0,
       "toto": 30.0, "language_table": 10.0, "kuka": 10.0, "berkeley_cable_routing": 10.0,
       "austin_buds_dataset_converted_externally_to_rlds": 20.0, "nyu_franka_play_dataset_converted_externally_to_rlds": 3.0,
       "ucsd_kitchen_dataset_converted_externally_to_rlds": 2.0, "utaustin_mutex": 20.0, "berkeley_fanuc_manipulation": 10.0,
       "cmu_stretch": 10.0, "stanford_hydra_dataset_converted_externally_to_rlds": 10.0,
       "austin_sirius_dataset_converted_externally_to_rlds": 20.0, "iamlab_cmu_pickup_insert_converted_externally_to_rlds": 20.0}

# text features that carry the task, generic rules (relative to steps/), in order of preference
LANGUAGE_KEYS = ("language_instruction", "observation/natural_language_instruction", "observation/language_instruction",
                 "natural_language_instruction", "instruction")
# observation vectors that are never state (language embeddings, timestamps)
NOT_STATE = re.compile(r"embedding|timestamp|time_step|index", re.IGNORECASE)
# action leaves that are never action columns (episode termination flags)
NOT_ACTION = re.compile(r"terminate|embedding", re.IGNORECASE)
# single-channel or 16-bit images that are depth maps, not cameras
DEPTH = re.compile(r"depth", re.IGNORECASE)


def find_layout(dataset: str, keys: set[str]) -> Layout | None:
    """The layout for a build named `dataset` with the step features `keys` (relative to steps/)."""
    for lay in LAYOUTS:
        if dataset in lay.datasets and lay.keys <= keys:
            return lay
    for lay in LAYOUTS:
        if lay.signature and set(lay.signature) <= keys and lay.keys <= keys:
            return lay
    return None


_PART = re.compile(r"(\d+)\s*x\s+([^,\[\]:]+)(:?)")


def _slug(text: str) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w and w not in ("robot", "the", "of")]
    return "_".join(words) or "value"


def description_names(description: str, dim: int) -> list[str] | None:
    """Column names from an OXE description such as "Robot state, consists of [7x robot joint
    angles, 2x gripper position]" (-> joint_angles_0..6, gripper_position_0, gripper_position_1)
    when its counts add up to `dim`; None otherwise. A group label ending in ':' ("7x delta
    end-effector: 3x pos, 3x rot, 1x gripper") is skipped for its parts."""
    inside = description[description.find("[") + 1 :] if "[" in description else ""
    parts = [(int(n), _slug(t), colon) for n, t, colon in _PART.findall(inside)]
    for pick in ([p for p in parts if not p[2]], [p for p in parts if p[2]]):
        if pick and sum(n for n, _, _ in pick) == dim:
            names: list[str] = []
            for n, slug, _ in pick:
                names += [slug] if n == 1 else [f"{slug}_{i}" for i in range(n)]
            return unique_names(names)
    return None


def unique_names(names: list[str]) -> list[str]:
    """`names` with each repeat suffixed `_1`, `_2`, ... (columns must have distinct names)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out


def column_names(key: str, dim: int, description: str = "") -> list[str]:
    """Names of a feature's columns without a layout: from its description, else `<leaf>_<i>`
    (or `<leaf>` for one column). A gripper keeps `gripper` in its name so the segmenter finds it."""
    named = description_names(description, dim) if description else None
    if named:
        return named
    leaf = key.rsplit("/", 1)[-1]
    return [leaf] if dim == 1 else [f"{leaf}_{i}" for i in range(dim)]


def fps_of(dataset: str, layout: Layout | None) -> float:
    """The build's control rate: the layout's, else the known rate of the dataset, else `DEFAULT_FPS`."""
    if layout is not None:
        return layout.fps
    return FPS.get(dataset, DEFAULT_FPS)
