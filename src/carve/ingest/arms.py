"""Which columns of an episode belong to which arm: the signal layout the segmenter reads.

`arm_layouts(state_names, action_names, state_dim, action_dim, cfg)` finds every gripper
column (names matching `segment.gripper_name_pattern`, in the state first and in the action
for grippers that exist only in the action stream) and groups the columns by arm prefix:
ALOHA-style `left_*` / `right_*`, robomimic-style `robot0_*`, or none for a single arm. Each
`ArmLayout` names the arm, its motion columns and their kind, and its gripper column.

An arm's gripper may show in the state (the measured opening) and in the action (the
operator's command). Transitions are read from the command when there is one: it is the
operator's intent, free of sensor noise and ahead of the fingers' lag; its polarity (some
commands are 1 = close) is taken from its correlation with the measured opening, else higher
is taken as open. The measured opening is what captions and the `gripper` column show.

Motion columns are the arm's Cartesian end-effector position when the names show one
(`x`/`y`/`z`, `*pos*`, `eef`), measured in metres, else its joints, in radians (joints in
degrees are recognised by their range and converted), so that every speed threshold of the
segmenter is in m/s or rad/s. Columns of velocities, torques, orientations, images and deltas
(`dx`, `delta_*`, `dpos_*`: delta actions) are never motion columns. Without names, every
non-gripper state column is one arm's joints.

An arm whose motion is its hand's position can also turn the hand without moving it (a knob, a
peg stood upright, a pour): its **turn** columns show that, in radians: the hand's orientation as
roll / pitch / yaw when the state names all three, else a quaternion (four `*quat*` columns:
robomimic's `robot0_eef_quat`), else its joints (state columns that are neither position, gripper,
orientation in another form, velocity nor delta). `kinematics.turn_speed` reads them as rad/s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from carve.core.config import SegmentConfig

_NOT_MOTION = re.compile(r"(vel|torque|effort|current|force|quat|rot|roll|pitch|yaw|image|timestamp|index|frame)",
                         re.IGNORECASE)
# deltas are not positions: `dx`, `dpos_x`, `delta_y`, `robot0_dpos_z` (robomimic's OSC_POSE names)
_DELTA = re.compile(r"delta|(^|[._])d(pos|rot)?[._]?[xyz]$", re.IGNORECASE)
_CARTESIAN = re.compile(r"(^|[._])(x|y|z)$|pos|eef|ee_", re.IGNORECASE)
SINGLE_ARM = "arm"


@dataclass
class ArmLayout:
    """One arm's columns: motion (state or action) and gripper (state or action)."""

    name: str
    motion: list[int] = field(default_factory=list)
    motion_in_action: bool = False
    kind: str = "joint"  # "joint" (rad) or "cartesian" (m)
    degrees: bool = False  # joint columns recorded in degrees (converted to rad)
    gripper: int | None = None  # state column of the measured opening
    gripper_action: int | None = None  # action column of the command
    # (state column, action column) of each position the action commands (the same name in both: a target,
    # not a delta), with their kind and unit; empty when the action commands none of the arm's positions
    command: list[tuple[int, int]] = field(default_factory=list)
    command_kind: str = "joint"
    command_degrees: bool = False
    # state columns that show the hand turning in place (a Cartesian arm only): "euler" (roll, pitch, yaw),
    # "quat" (a unit quaternion, any component order) or "joint"; Euler angles and joints in degrees when their
    # range says so
    turn: list[int] = field(default_factory=list)
    turn_kind: str = ""
    turn_degrees: bool = False

    def turn_signal(self, state: np.ndarray) -> np.ndarray:
        """(T, k) the turn columns: radians, Euler angles unwrapped (a yaw through +-pi is no jump), or the
        quaternion as recorded; (T, 0) without any."""
        if not self.turn:
            return np.zeros((state.shape[0], 0))
        x = np.asarray(state, dtype=np.float64)[:, self.turn]
        if self.turn_kind == "quat":
            return x
        x = np.deg2rad(x) if self.turn_degrees else x
        return np.unwrap(x, axis=0) if self.turn_kind == "euler" else x

    def command_signal(self, action: np.ndarray | None) -> np.ndarray:
        """(T, k) the commanded positions in SI units (rad or m); (T, 0) without any."""
        if action is None or not self.command:
            return np.zeros((0 if action is None else action.shape[0], 0))
        x = np.asarray(action, dtype=np.float64)[:, [a for _, a in self.command]]
        return np.deg2rad(x) if self.command_degrees else x

    def command_measured(self, state: np.ndarray) -> np.ndarray:
        """(T, k) the measured positions the action commands (`command`'s state columns), in SI units."""
        x = np.asarray(state, dtype=np.float64)[:, [s for s, _ in self.command]]
        return np.deg2rad(x) if self.command_degrees else x

    def motion_signal(self, state: np.ndarray, action: np.ndarray | None) -> np.ndarray:
        """(T, k) motion columns in SI units (rad or m); (T, 0) when the arm has none."""
        src = action if self.motion_in_action else state
        if src is None or not self.motion:
            return np.zeros((state.shape[0], 0))
        x = np.asarray(src, dtype=np.float64)[:, self.motion]
        return np.deg2rad(x) if self.degrees else x

    def gripper_measured(self, state: np.ndarray, action: np.ndarray | None) -> np.ndarray:
        """(T,) measured opening (state), else the command; empty without a gripper."""
        if self.gripper is not None:
            return np.asarray(state, dtype=np.float64)[:, self.gripper]
        return self.gripper_command(state, action)

    def gripper_command(self, state: np.ndarray, action: np.ndarray | None) -> np.ndarray:
        """(T,) the gripper command oriented so that higher is more open, else the measured opening."""
        if self.gripper_action is None or action is None:
            if self.gripper is None:
                return np.zeros((0,))
            return np.asarray(state, dtype=np.float64)[:, self.gripper]
        cmd = np.asarray(action, dtype=np.float64)[:, self.gripper_action]
        if self.gripper is not None:
            meas = np.asarray(state, dtype=np.float64)[:, self.gripper]
            if np.std(cmd) > 0 and np.std(meas) > 0 and np.corrcoef(cmd, meas)[0, 1] < 0:
                cmd = -cmd
        return cmd


def _prefix(name: str, pattern: re.Pattern[str]) -> str:
    """The part of a gripper column's name before the gripper token (`left_gripper` -> `left_`)."""
    m = pattern.search(name)
    return name[: m.start()] if m else ""


def _arm_name(prefix: str) -> str:
    p = prefix.strip("._- ").lower()
    return p or SINGLE_ARM


def _motion_columns(names: list[str], members: list[int], exclude: set[int]) -> tuple[list[int], str]:
    cand = [i for i in members if i not in exclude and not _NOT_MOTION.search(names[i])
            and not _DELTA.search(names[i])]
    cart = [i for i in cand if _CARTESIAN.search(names[i])]
    if len(cart) == 3:
        return cart, "cartesian"
    return cand, "joint"


def _looks_like_degrees(x: np.ndarray) -> bool:
    """Joint angles whose range could not be radians (more than two turns end to end)."""
    return x.size > 0 and float(np.nanmax(np.abs(x))) > 4 * np.pi


def arm_layouts(
    state_names: list[str] | None,
    action_names: list[str] | None,
    state: np.ndarray,
    action: np.ndarray | None,
    cfg: SegmentConfig,
) -> list[ArmLayout]:
    """The arms of an episode (at least one), each with its motion and gripper columns."""
    pat = re.compile(cfg.gripper_name_pattern, re.IGNORECASE)
    sdim = state.shape[1] if state.ndim == 2 else 0
    adim = action.shape[1] if action is not None and action.ndim == 2 else 0
    snames = list(state_names or [])[:sdim] if state_names and len(state_names) == sdim else []
    anames = list(action_names or [])[:adim] if action_names and len(action_names) == adim else []

    arms: dict[str, ArmLayout] = {}
    prefixes: dict[str, str] = {}
    if cfg.gripper_dim is not None and 0 <= cfg.gripper_dim < sdim:
        arms[SINGLE_ARM] = ArmLayout(SINGLE_ARM, gripper=int(cfg.gripper_dim))
        prefixes[SINGLE_ARM] = ""
    else:
        for names, in_action in ((snames, False), (anames, True)):
            for i, n in enumerate(names):
                if not pat.search(n):
                    continue
                pre = _prefix(n, pat)
                arm = _arm_name(pre)
                lay = arms.setdefault(arm, ArmLayout(arm))
                prefixes.setdefault(arm, pre)
                if in_action and lay.gripper_action is None:
                    lay.gripper_action = i
                elif not in_action and lay.gripper is None:
                    lay.gripper = i  # a second finger of the same gripper is skipped
    if not arms:
        arms[SINGLE_ARM] = ArmLayout(SINGLE_ARM)
        prefixes[SINGLE_ARM] = ""

    multi = len(arms) > 1
    for arm, lay in arms.items():
        pre = prefixes[arm].lower()
        for names, dim, in_action in ((snames, sdim, False), (anames, adim, True)):
            if not dim:
                continue
            if names:
                members = [i for i in range(dim) if not multi or names[i].lower().startswith(pre)]
            else:
                members = list(range(dim))
            # every gripper column (a second finger too) is gripper, never motion
            exclude = {i for i in members if names and pat.search(names[i])}
            g = lay.gripper_action if in_action else lay.gripper
            exclude |= {g} if g is not None else set()
            if names:
                motion, kind = _motion_columns(names, members, exclude)
            else:
                motion, kind = [i for i in members if i not in exclude], "joint"
            if motion:
                lay.motion, lay.kind, lay.motion_in_action = motion, kind, in_action
                break
        if lay.motion and lay.kind == "joint":
            src = action if lay.motion_in_action else state
            lay.degrees = _looks_like_degrees(np.asarray(src, dtype=np.float64)[:, lay.motion])
        if snames and anames and action is not None:
            _command_columns(lay, snames, anames, pre if multi else "", pat, state)
        if lay.kind == "cartesian" and not lay.motion_in_action and snames:
            members = [i for i in range(sdim) if not multi or snames[i].lower().startswith(pre)]
            _turn_columns(lay, snames, members, pat, state)
    return sorted(arms.values(), key=lambda a: a.name)


_EULER = re.compile(r"(roll|pitch|yaw)", re.IGNORECASE)


def _turn_columns(lay: ArmLayout, names: list[str], members: list[int], pat: re.Pattern[str],
                  state: np.ndarray) -> None:
    """A Cartesian arm's turn columns: roll, pitch and yaw when all three are named (and are not
    velocities), else a quaternion's four columns, else its joints (at least two)."""
    plain = [i for i in members if not re.search(r"vel|rate|delta", names[i], re.I)]
    euler = [i for i in plain if _EULER.search(names[i])]
    quat = [i for i in plain if re.search(r"quat", names[i], re.I)]
    if len(euler) == 3:
        cols, kind = euler, "euler"
    elif len(quat) == 4:
        cols, kind = quat, "quat"
    else:
        cols = [i for i in members if i not in lay.motion and not pat.search(names[i])
                and not _NOT_MOTION.search(names[i]) and not _DELTA.search(names[i])
                and not _CARTESIAN.search(names[i])]
        kind = "joint"
        if len(cols) < 2:
            return
    lay.turn, lay.turn_kind = cols, kind
    lay.turn_degrees = kind != "quat" and _looks_like_degrees(np.asarray(state, dtype=np.float64)[:, cols])


def _command_columns(lay: ArmLayout, snames: list[str], anames: list[str], pre: str, pat: re.Pattern[str],
                     state: np.ndarray) -> None:
    """The arm's positions that the action commands: state and action columns of the same name (an
    absolute target: a joint-position controller's, a leader arm's), grippers, deltas and non-positions
    left out; at least two of them."""
    where = {n.strip().lower(): j for j, n in enumerate(anames)}
    pairs = [(i, where[n.strip().lower()]) for i, n in enumerate(snames)
             if n.lower().startswith(pre) and n.strip().lower() in where and not pat.search(n)
             and not _NOT_MOTION.search(n) and not _DELTA.search(n)]
    cart = [(i, j) for i, j in pairs if _CARTESIAN.search(snames[i])]
    pairs, kind = (cart, "cartesian") if len(cart) == 3 else ([p for p in pairs if p not in cart], "joint")
    if len(pairs) >= 2:
        lay.command, lay.command_kind = pairs, kind
        lay.command_degrees = kind == "joint" and _looks_like_degrees(
            np.asarray(state, dtype=np.float64)[:, [i for i, _ in pairs]])
