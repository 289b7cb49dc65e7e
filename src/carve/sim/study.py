"""The closed-loop study behind `carve eval-sim --study`: does event-grounded training beat chunks?

    carve eval-sim --study --out paper/study.md            # writes study.md and study.json

One command, in one process (plus `--workers` evaluation and recording processes). What every
policy observes besides its proprioception is `observation`: "pixels" (the default, the main
study) is the front camera's frame, rendered at `image_size` and given to every mode as the same
3 x 32 x 32 input to the same conv stem (`trainer.model.ConvStem`, trained with each policy;
`views="front+wrist"` adds the wrist camera's frame, through its own convolutions, to the token);
"privileged" (the ablation) is the simulator's object poses and goal point, no images, so control
failures are not confused with perception failures. Task types enter the pooled rows and
contrasts only if their best main variant exceeds `TASK_INCLUSION` (`included_tasks`).

1. **Data.** `--train-episodes` demonstrations (task types round-robin, episode `i` is
   `carve synth`'s scene `episode_seed(data_base, i)`) are recorded by the scripted operator and
   replayed in a privileged `SimEnv`: the env's observation before each action (state +
   `object_state`, and with pixels the policy's visual input of the rendered frame) becomes the
   row's `state` / `env_state` / `obs_visual`, exactly what a policy sees at every decision
   point. Each episode becomes Carve event rows through the
   house's own ingest (`ingest.events.episode_events`: segmenter, per-event slices, the
   `env_state` column) and kinematic captions (`captioners.kinematic`).
2. **Split, then balance.** Held-out episodes are drawn at the episode level (`split_seed`),
   the same for every run; normalisation and the balance both come from the training episodes
   only: k-means (`clustering.kmeans`) on each training event's motion descriptor + caption
   embedding, weight 1 / cluster size (the unbalanced catalog weighs every event 1).
3. **The chunk baseline at its best.** Before the final run, chunk mode is swept on a
   validation set that the final numbers never use (training seeds from `val_first_train_seed`,
   environment seeds from `val_seed_base`): chunk length `chunk_lens` x executed steps
   `chunk_exec` (4, half, all) and ACT's temporal ensembling (`ensemble_m`; plan every step,
   average the open chunks). The best configuration by validation success (then progress) is
   the final `chunk_best`.
4. **Training.** Event, event on balanced weights, unified and `chunk_best` over `train_seeds`
   seeds (training seed i initialises the weights, data seed 1000 + i draws the batches), all
   with the same text encoder, backbone and matched parameter count (MLP width per mode), and the
   same action representation (`actions`: the recorded joint targets, or with "relative" their offsets
   from the joints at the plan's start, `ModelConfig.relative_actions`, normalised by the offsets' statistics).
5. **Evaluation.** Every policy acts closed loop on the same environment seeds per task type,
   from `seed_base`, a base no development run used: event with the caption planner and
   captions-off, executing its predicted length; `chunk_best` as swept; unified re-planning
   every `n_action_steps`. The env's hold between actions is `foh` (its default) for all; the
   hold ablation re-evaluates event and `chunk_best` with `linear` and `zoh` holds on the first
   `hold_ablation_seeds` training seeds. The equal-budget ablation (`matched_seeds`) retrains event,
   `chunk_best` and unified with batch sizes that give every mode event mode's supervised action
   positions per optimiser step (measured from each mode's sampler), each until its validation action
   loss on the held-out episodes stops falling (`study_fit.Plateau`), and evaluates them the same way.
6. **Report.** One primary contrast, named in the config before the run (`primary`: event -
   chunk_best, success), with a two-level bootstrap CI (training seeds x environment episodes,
   `sim.study_stats`); every other contrast is exploratory, with Holm-adjusted p-values.
   Held-out action MSE per mode, parameters and compute per mode. Markdown + JSON.

Every cache (recorded rows, trained policies, evaluated episodes) is keyed on the code
(`study_cache.code_hash`), the configuration, the data and, for episodes, the policy's weights:
a change to any of them recomputes, and a run cut short resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EVAL_BLOCK = 10  # environment seeds per evaluation job
DATA_SEED_BASE = 0  # carve synth's default --seed: the training scenes
CAPTION_GATE = 0.95  # verb-class accuracy of the study's captions below which captions-off tests no language
STUDY_TASKS = ("pick_place", "stack", "push", "two_object")
OBSERVATIONS = ("pixels", "privileged")  # rendered camera images through one encoder | simulator object poses
CAMERAS = ("random", "fixed")  # each scene's camera pose drawn, or the one nominal pose
# the rendered views every pixel policy sees: the front camera, or the front camera and the wrist camera
# that rides on the hand (robomimic's agentview + eye-in-hand); their camera counts in `SimEnv(cameras=N)`
VIEWS = {"front": 1, "front+wrist": 2}
ACTION_FRAMES = ("absolute", "relative")  # joint targets as recorded | offsets from the plan start's joints
PIXEL_ENCODER = "pixels"  # the pixel study's image input, the same for every mode (trainer.policy)
PIXEL_SIDE = 32  # images reach the model at 3 x 32 x 32, through its conv stem (trainer.model.ConvStem)
VISUAL_DIM = 3 * PIXEL_SIDE * PIXEL_SIDE
IMAGE_SIZE = 64  # rendered frame size (2 x PIXEL_SIDE; TinyRenderer at 128 px costs 3x the time)
TASK_INCLUSION = 0.20  # a task enters the pooled contrasts only if its best mode's success exceeds this
VAL_DATA_SEED = 7  # draws the equal-budget ablation's fixed validation batches from the held-out episodes
PROBE_DATA_SEED = 8  # draws the samples that measure each mode's supervised actions per sample


@dataclass
class StudyConfig:
    tasks: list[str] = field(default_factory=lambda: list(STUDY_TASKS))
    observation: str = "pixels"  # what every policy observes besides its proprioception (OBSERVATIONS)
    image_size: int = IMAGE_SIZE
    visual_shift: int = 0  # pixels: random shift of the training images (ModelConfig.visual_shift; DrQ)
    # every mode's joint targets: "absolute" (the dataset's values) or "relative" (offsets from the joints
    # measured at the plan's start, ModelConfig.relative_actions; the gripper command stays absolute)
    actions: str = "absolute"
    # the fixed cameras' pose: "random" (drawn per scene, as `carve synth` records) or "fixed" (every scene's at
    # `sim.scene.CameraPose.nominal`, as a robot cell mounts them), in the demonstrations and the evaluation
    camera: str = "random"
    views: str = "front"  # pixels: the cameras rendered for every policy (VIEWS)
    train_episodes: int = 40
    holdout_frac: float = 0.2
    split_seed: int = 0
    data_base: int = DATA_SEED_BASE
    fps: int = 12
    train_seeds: int = 10
    first_train_seed: int = 0  # training seeds first_train_seed .. first_train_seed + train_seeds - 1
    env_seeds: int = 50
    seed_base: int = 60_000  # the final environment seeds: no development run used this base (50000: the privileged study's)
    steps: int = 300
    batch_size: int = 32
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 32
    chunk_len: int = 8  # unified mode's horizon
    n_action_steps: int = 4  # unified mode's executed steps
    # the chunk sweep (validation only): lengths x executed steps ("4", "half", "all") + ensembling
    chunk_lens: list[int] = field(default_factory=lambda: [8, 16, 32])
    chunk_exec: list[str] = field(default_factory=lambda: ["4", "half", "all"])
    ensemble_m: float | None = 0.01  # ACT's temporal ensembling coefficient (None: not swept)
    val_train_seeds: int = 3
    val_first_train_seed: int = 100
    val_env_seeds: int = 20
    val_seed_base: int = 20_000
    holds: list[str] = field(default_factory=lambda: ["linear", "zoh"])  # ablation holds beside foh
    hold_ablation_seeds: int = 3
    primary: list[str] = field(default_factory=lambda: ["event", "chunk_best"])  # named before the run
    caption_dropout: float = 0.3
    text: str = "hashed"  # the one text encoder: "hashed" (feature hashing) or "minilm"
    text_dim: int = 128
    clusters: int = 0  # k for the balance (0: sqrt of the event count)
    workers: int = 2
    hold_baseline: bool = True  # also evaluate the do-nothing policy (what a task gives for free)
    # the equal-budget ablation: event, chunk_best and unified on the first `matched_seeds` training seeds,
    # each with the batch size that gives event mode's supervised actions per optimiser step (at
    # `batch_size`), trained until the validation action loss on the held-out episodes stops falling (0: off)
    matched_seeds: int = 3
    plateau_every: int = 100
    plateau_patience: int = 3
    plateau_max_steps: int = 3000
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.observation not in OBSERVATIONS:
            raise ValueError(f"unknown observation {self.observation!r}; use one of {', '.join(OBSERVATIONS)}")
        if self.camera not in CAMERAS:
            raise ValueError(f"unknown camera {self.camera!r}; use one of {', '.join(CAMERAS)}")
        if self.views not in VIEWS:
            raise ValueError(f"unknown views {self.views!r}; use one of {', '.join(VIEWS)}")
        if self.views != "front" and self.observation != "pixels":
            raise ValueError(f"views {self.views!r} renders cameras: it needs observation 'pixels', "
                             f"not {self.observation!r}")
        if self.views != "front":
            from carve.sim.tasks import TWO_ARM_TASK_TYPES

            two_arm = [t for t in self.tasks if t in TWO_ARM_TASK_TYPES]
            if two_arm:
                raise ValueError(f"views {self.views!r} is the one arm's wrist camera; {', '.join(two_arm)} has "
                                 f"two arms (use views 'front')")
        if self.actions not in ACTION_FRAMES:
            raise ValueError(f"unknown actions {self.actions!r}; use one of {', '.join(ACTION_FRAMES)}")
        if self.visual_shift < 0:
            raise ValueError(f"visual_shift must be 0 or more pixels, got {self.visual_shift}")
        if self.visual_shift and self.observation != "pixels":
            raise ValueError(f"visual_shift {self.visual_shift} shifts rendered images: it needs observation 'pixels', "
                             f"not {self.observation!r}")


# ----------------------------------------------------------------------------- data
def record_episode(task: str, seed: int, fps: int, observation: str = "privileged",
                   image_size: int = IMAGE_SIZE, camera: str = "random", views: str = "front") -> dict[str, Any]:
    """The scripted demonstration of (task, seed), replayed in a privileged env: per step the
    observation before the action (state, object_state) and the action. With `observation="pixels"`
    the env also renders the cameras of `views` (VIEWS) at `image_size` and each step keeps the visual
    input a `visual=PIXEL_ENCODER` policy computes from the same images (`trainer.policy.visual_vector`)."""
    from carve.sim.env import MAX_SECONDS, SimEnv
    from carve.sim.tasks import run_episode

    if observation not in OBSERVATIONS:
        raise ValueError(f"unknown observation {observation!r}; use one of {', '.join(OBSERVATIONS)}")
    pixels = observation == "pixels"
    encoder = _visual_encoder(VIEWS[views]) if pixels else None
    ep = run_episode(task, seed, fps=fps, render=False)
    states, envs, actions, visual = [], [], [], []
    with SimEnv(fps=fps, render=pixels, size=image_size, privileged=True, camera_jitter=camera == "random",
                cameras=VIEWS[views],
                max_seconds=max(MAX_SECONDS[task], ep.length / fps + 1.0)) as env:
        obs = env.reset(task, seed)
        info: dict[str, Any] = {"success": False}
        for a in ep.action:
            states.append(obs["state"])
            envs.append(obs["privileged"]["object_state"])
            if encoder is not None:
                visual.append(_visual_token(encoder, obs["images"]))
            actions.append(a)
            obs, _, done, info = env.step(a)
            if done:
                break
    return {"task": ep.task, "task_type": task, "seed": seed, "truth": ep.ground_truth(0),
            "state": np.asarray(states, np.float32),
            "env_state": np.asarray(envs, np.float32), "action": np.asarray(actions, np.float32),
            "visual": np.asarray(visual, np.float32) if pixels else None,
            "state_names": ep.state_names, "action_names": ep.action_names, "replay_success": bool(info["success"])}


def paired_dims(state_names: list[str], action_names: list[str]) -> int:
    """How many leading action dimensions command the state's values of the same index: an action named
    as its state value, or that name + "_target" (`joint_0_target` for `joint_0`)."""
    n = 0
    for s, a in zip(state_names, action_names, strict=False):
        if a not in (s, f"{s}_target"):
            break
        n += 1
    return n


def _visual_encoder(cameras: int = 1) -> Any:
    """The one image input of the pixel study: the policy's `visual=PIXEL_ENCODER` encoder, for `cameras`
    camera images."""
    from carve.trainer.policy import PolicySettings, make_visual_encoder

    return make_visual_encoder(PolicySettings(visual=PIXEL_ENCODER), cameras * VISUAL_DIM, cameras)


def _visual_token(encoder: Any, images: dict[str, np.ndarray]) -> np.ndarray:
    """What a policy with default settings (`cameras`: every camera, sorted) sees of `images`."""
    from carve.trainer.policy import visual_vector

    return visual_vector(encoder, [images[n] for n in sorted(images)], encoder.cameras * VISUAL_DIM)


def episode_rows(rec: dict[str, Any], index: int, fps: int) -> list[dict[str, Any]]:
    """Carve event rows of one recorded episode (house ingest + kinematic captions)."""
    from carve.captioners.base import views_from_table
    from carve.captioners.kinematic import caption_episode_events, event_phases
    from carve.core.config import SegmentConfig
    from carve.ingest.events import ENV_STATE_FEATURE, episode_events
    from carve.ingest.sources.base import Episode, EpisodeRef
    from carve.pipeline.step import rows_to_stage_table

    n = len(rec["action"])
    ep = Episode(ref=EpisodeRef("sim://study", "sim", "study", index), fps=float(fps), task=rec["task"],
                 state=rec["state"], action=rec["action"], timestamps=np.arange(n) / fps,
                 state_names=list(rec["state_names"]), action_names=list(rec["action_names"]), cameras=[],
                 robot="panda", extras={ENV_STATE_FEATURE: rec["env_state"]})
    rows = episode_events(ep, SegmentConfig(), None)
    # the pipeline's own table of the rows (`rows_to_stage_table`) read by the caption stage's own reader
    # (`views_from_table`: state and action names, arms), so the study's captions are the pipeline's
    (views,) = views_from_table(rows_to_stage_table(rows))
    caps = caption_episode_events(views)
    phases = event_phases(views)
    for r, c, p in zip(rows, caps, phases, strict=True):
        if rec.get("visual") is not None:  # the visual token of every step (stride 1), as ingest writes obs_visual
            r["obs_stride"] = 1
            # an array, not lists: 3 x 32 x 32 values a step (the study's rows never become Parquet)
            r["obs_visual"] = rec["visual"][int(r["start_frame"]) : int(r["end_frame"])]
        r["caption"] = c
        r["phase"] = [p.phase, p.arm, int(p.cycle)]
        r["task_type"] = rec["task_type"]
    return rows


def _recorded_rows(cfg: StudyConfig, work: Path) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """The training demonstrations' event rows, the replay successes and the simulator's phase truth per
    episode (its `ground_truth_events.json` entries), cached in `work` by (code, tasks, episodes, seed, fps)."""
    import pickle

    from carve.sim.study_cache import code_hash, key
    from carve.sim.synth import episode_seed

    k = key(code_hash(), cfg.tasks, cfg.train_episodes, cfg.data_base, cfg.fps, cfg.observation, cfg.image_size,
            cfg.camera, cfg.views)
    cache = work / f"rows-{k}.pkl"
    if cache.exists():
        rows, ok, truth = pickle.loads(cache.read_bytes())
        return rows, ok, truth
    rows, ok, truth = [], 0, []
    jobs = [(cfg.tasks[i % len(cfg.tasks)], episode_seed(cfg.data_base, i), cfg.fps, cfg.observation, cfg.image_size,
             cfg.camera, cfg.views) for i in range(cfg.train_episodes)]
    for i, rec in enumerate(_pool_map(_record, jobs, cfg.workers)):  # in episode order, whatever the workers
        ok += rec["replay_success"]
        rows.extend(episode_rows(rec, i, cfg.fps))
        truth.append({**rec["truth"], "episode_index": i})
    work.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps((rows, ok, truth)))
    tmp.replace(cache)
    return rows, ok, truth


def _record(job: tuple[str, int, int, str, int, str, str]) -> dict[str, Any]:
    return record_episode(*job)


def _pool_map(fn: Any, items: list[Any], workers: int) -> Iterator[Any]:
    """`fn` over `items`, results in the items' order: in `workers` processes, or in this one when
    `workers` <= 1 (the recording and every evaluation go through here)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(workers) as ex:
        yield from ex.map(fn, items)


def caption_check(rows: list[dict[str, Any]], truth: list[dict[str, Any]]) -> dict[str, Any]:
    """The study's captions against the simulator's own phases (`captioners.eval.evaluate`, verb class at
    each event's middle frame; a replay that stops at success ends inside its last phase): accuracy,
    events, per task type, the class confusions, and whether it reaches `CAPTION_GATE`, the accuracy below
    which a captions-off contrast is no test of language."""
    from carve.captioners.eval import evaluate

    rep = evaluate([{**r, "episode_index": int(r["episode_index"])} for r in rows], {"episodes": truth}, at="middle")
    return {"class_accuracy": rep["class_accuracy"], "events": rep["class_events"],
            "per_task": {k: v["accuracy"] for k, v in rep["per_task_class"].items()},
            "confusion": rep["class_confusion"], "gate": CAPTION_GATE,
            "passed": rep["class_accuracy"] >= CAPTION_GATE and rep["unmatched_events"] == 0}


def balance_weights(rows: list[dict[str, Any]], text: Any, k: int = 0, seed: int = 0) -> np.ndarray:
    """Per event 1 / (its cluster's size) (mean 1): k-means on motion descriptor + caption embedding."""
    from carve.clustering.kmeans import kmeans
    from carve.embedding.motion import motion_descriptor

    x = np.stack([np.concatenate([motion_descriptor(r["state"], r["action"], r["gripper"], 32),
                                  text(r["caption"])]) for r in rows]).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = k or max(2, round(float(np.sqrt(len(rows)))))
    _, labels, _ = kmeans(x, min(k, len(rows)), seed=seed)
    sizes = np.bincount(labels, minlength=int(labels.max()) + 1)
    w = 1.0 / sizes[labels]
    return w * len(w) / w.sum()


def make_text_encoder(name: str, dim: int) -> Any:
    from carve.trainer.policy import PolicySettings
    from carve.trainer.policy import make_text_encoder as mk

    return mk(PolicySettings(text=name), dim)


# ----------------------------------------------------------------------------- evaluation worker
class HoldPolicy:
    """The do-nothing reference: hold the first observed joint positions, gripper as observed.
    Shows how much success / progress a task gives for free."""

    def __init__(self, fps: int) -> None:
        from carve.trainer.policy import PolicySettings

        self.settings = PolicySettings(visual="zeros", fps=fps, privileged_state=True)
        self.action: np.ndarray | None = None

    def reset(self) -> None:
        self.action = None

    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        if self.action is None:
            st = np.asarray(observation["state"], np.float32)
            self.action = np.concatenate([st[:7], [0.0]]).astype(np.float32)
        return self.action



def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def policy_hash(pdir: str) -> str:
    """The weights, normalisation and config of a saved policy ("hold": the do-nothing policy)."""
    from carve.sim.study_cache import file_hash
    from carve.trainer.policy import CONFIG_FILE, NORM_FILE, WEIGHTS_FILE

    if pdir == "hold":
        return "hold"
    return file_hash([Path(pdir) / f for f in (WEIGHTS_FILE, NORM_FILE, CONFIG_FILE)])


def _eval_job(job: dict[str, Any]) -> dict[str, Any]:
    """Evaluate one policy variant on (task, seeds); an episode already in its cache is reused
    when its key (code, weights, how the policy runs, the env's conditions) is the same."""
    import torch

    from carve.sim.eval_sim import evaluate_policy
    from carve.sim.study_cache import code_hash, key
    from carve.trainer.policy import Policy

    torch.set_num_threads(1)
    cache = Path(job.get("cache") or job["policy"]) / "study_eval" / job["variant"]
    run = {k: job.get(k) for k in ("fps", "max_seconds", "hold", "n_action_steps", "temporal_ensemble",
                                   "captions_off", "size", "camera", "views")}
    k = key(code_hash(), policy_hash(job["policy"]), run)
    episodes, todo = [], []
    for task in job["tasks"]:
        for seed in job["seeds"]:
            hit = _read_json(cache / f"{task}-{seed}.json")
            if hit and hit.get("key") == k:
                episodes.append(hit["episode"])
            else:
                todo.append((task, seed))
    if todo:
        policy: Any = HoldPolicy(job["fps"]) if job["policy"] == "hold" else Policy.load(job["policy"])
        if job.get("captions_off"):
            policy.settings.text_source = "task"
            policy.planner = None
        if job.get("n_action_steps") is not None:
            policy.settings.n_action_steps = int(job["n_action_steps"])
        policy.settings.temporal_ensemble = job.get("temporal_ensemble")
        cache.mkdir(parents=True, exist_ok=True)
        for task, seed in todo:
            e = evaluate_policy(policy, [task], [seed], fps=job["fps"], max_seconds=job["max_seconds"],
                                hold=job.get("hold") or "foh", size=int(job.get("size") or IMAGE_SIZE),
                                camera_jitter=(job.get("camera") or "random") == "random",
                                cameras=VIEWS[job.get("views") or "front"])["episodes"][0]
            _write_json(cache / f"{task}-{seed}.json", {"key": k, "run": run, "episode": e})
            episodes.append(e)
    return {"variant": job["variant"], "train_seed": job["train_seed"], "episodes": episodes}


# ----------------------------------------------------------------------------- statistics
def boot_mean_ci(x: np.ndarray, seed: int = 0, n_boot: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap CI of a mean over one level (held-out episodes)."""
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    m = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    return float(np.percentile(m, 2.5)), float(np.percentile(m, 97.5))


def _matrix(episodes: list[dict[str, Any]], key: str, keys: list[tuple[str, int]], seeds: list[int]) -> np.ndarray:
    """(environment episodes, training seeds) of `key`."""
    idx = {k: i for i, k in enumerate(keys)}
    col = {s: j for j, s in enumerate(seeds)}
    m = np.full((len(keys), len(seeds)), np.nan)
    for e in episodes:
        m[idx[(e["task"], e["seed"])], col[e["train_seed"]]] = float(e[key])
    return m


def summarize_variant(m_succ: np.ndarray, m_prog: np.ndarray) -> dict[str, Any]:
    """Mean success and progress with two-level bootstrap CIs (training seeds x environment episodes)."""
    from carve.sim.study_stats import interval

    s, p = interval(m_succ, 0), interval(m_prog, 1)
    return {"success_rate": s["mean"], "success_ci95": s["ci95"], "progress_mean": p["mean"],
            "progress_ci95": p["ci95"], "success_per_train_seed": np.nanmean(m_succ, 0).round(4).tolist(),
            "progress_per_train_seed": np.nanmean(m_prog, 0).round(2).tolist(),
            "env_episodes": int(m_succ.shape[0]), "train_seeds": int(m_succ.shape[1])}


def paired(a: np.ndarray, b: np.ndarray, seed: int = 2) -> dict[str, Any]:
    """a - b on the same environment episodes and training seeds: two-level bootstrap."""
    from carve.sim.study_stats import interval

    r = interval(a - b, seed)
    return {"diff": r["mean"], "ci95": r["ci95"], "p": r["p"]}


MAIN_VARIANTS = ("event", "event_captions_off", "event_balanced", "unified", "chunk_best")


def included_tasks(per_task: dict[str, dict[str, dict[str, Any]]], tasks: list[str]) -> list[str]:
    """The task types the pooled summaries and contrasts use (the rule in paper/plan.md, fixed before the
    numbers): those where the best of the main variants (`MAIN_VARIANTS`, every training seed, the final
    environment seeds) succeeds more often than `TASK_INCLUSION`. The rule looks at every mode alike, so
    it favours none. With no task above it, every task is kept (and the report says so)."""
    keep = [t for t in tasks
            if max((per_task[v][t]["success_rate"] for v in MAIN_VARIANTS if v in per_task), default=0.0) > TASK_INCLUSION]
    return keep or list(tasks)


def _exec_steps(option: str, horizon: int) -> int:
    return {"half": max(1, horizon // 2), "all": horizon}.get(option) or min(int(option), horizon)


def chunk_configs(cfg: StudyConfig) -> list[dict[str, Any]]:
    """The swept chunk configurations: (length, executed steps) without repeats, plus ensembling."""
    out, seen = [], set()
    for h in cfg.chunk_lens:
        for opt in cfg.chunk_exec:
            n = _exec_steps(opt, h)
            if (h, n) not in seen:
                seen.add((h, n))
                out.append({"name": f"chunk-H{h}-x{n}", "chunk_len": h, "n_action_steps": n, "temporal_ensemble": None})
        if cfg.ensemble_m is not None:
            out.append({"name": f"chunk-H{h}-ens", "chunk_len": h, "n_action_steps": None,
                        "temporal_ensemble": cfg.ensemble_m})
    return out


# ----------------------------------------------------------------------------- the study
def run_study(cfg: StudyConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the whole study; writes `<out>` (markdown; `.md` added if absent) and the JSON beside it."""
    import hashlib

    import torch

    from carve.sim.eval_sim import eval_seeds
    from carve.sim.study_cache import code_hash, key
    from carve.sim.study_episodes import Sampler, TextCache, episodes_from_rows, norm_stats, split_episodes
    from carve.sim.study_fit import (
        Plateau,
        actions_per_sample,
        fit,
        matched_config,
        offline_metrics,
        spec_for,
    )
    from carve.sim.study_stats import holm
    from carve.trainer.config import ModelConfig
    from carve.trainer.planner import CaptionPlanner
    from carve.trainer.policy import Policy, PolicySettings

    torch.set_num_threads(1)  # 2 threads on a shared 2-core box is ~50x slower for these tiny matrices
    out_md = Path(out)
    if out_md.suffix != ".md":
        out_md = out_md.with_suffix(".md")
    out_md.parent.mkdir(parents=True, exist_ok=True)
    work = out_md.with_suffix("")
    timings: dict[str, float] = {}

    def log(msg: str) -> None:
        if progress:
            print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # 1. data; 2. split, then normalisation, planner and balance from the training episodes only
    t0 = time.perf_counter()
    rows, replay_ok, truth = _recorded_rows(cfg, work)
    captions = caption_check(rows, truth)
    text = TextCache(make_text_encoder(cfg.text, cfg.text_dim))
    text.warm([r["caption"] for r in rows] + [r["task"] for r in rows])
    ids = list(dict.fromkeys(r["episode_id"] for r in rows))
    train_ids, held_ids = split_episodes(ids, cfg.holdout_frac, cfg.split_seed)
    train_set = set(train_ids)
    train_rows = [r for r in rows if r["episode_id"] in train_set]
    w = balance_weights(train_rows, text, cfg.clusters, cfg.split_seed)
    for r in rows:
        r["weight"] = 1.0
    for r, wi in zip(train_rows, w, strict=True):
        r["weight"] = float(wi)
    signals = hashlib.sha256()
    for r in rows:
        signals.update(np.asarray(r["state"], np.float32).tobytes() + np.asarray(r["action"], np.float32).tobytes())
    data_key = key(signals.hexdigest(), [(r["episode_id"], r["event_index"], r["caption"], round(r["weight"], 9))
                                         for r in rows])
    timings["data_s"] = time.perf_counter() - t0
    log(f"data: {cfg.train_episodes} episodes, {len(rows)} events, replay success {replay_ok}/"
        f"{cfg.train_episodes} ({timings['data_s']:.0f} s); caption verb classes {captions['class_accuracy']:.3f} "
        f"of {captions['events']} events")
    pixels = cfg.observation == "pixels"
    episodes = episodes_from_rows(rows, privileged=not pixels)
    tr = [e for e in episodes if e.episode_id in train_set]
    ho = [e for e in episodes if e.episode_id in set(held_ids)]
    sd, ad = tr[0].state.shape[1], tr[0].action.shape[1]
    relative = (paired_dims(list(rows[0]["state_names"]), list(rows[0]["action_names"]))
                if cfg.actions == "relative" else 0)
    stats = norm_stats(tr, relative, max(cfg.max_len, cfg.chunk_len, *cfg.chunk_lens))
    planner = CaptionPlanner.fit([(e.task, [tuple(r["phase"]) for r in rows if r["episode_id"] == e.episode_id])
                                  for e in tr])
    lengths = np.concatenate([e.ends - e.starts for e in tr])
    base = ModelConfig(d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, block_size=4,
                       visual_stem="conv" if pixels else "linear", visual_shift=cfg.visual_shift,
                       visual_cameras=VIEWS[cfg.views] if pixels else 1, relative_actions=relative)

    def spec(mode: str, horizon: int) -> Any:
        visual_dim = VIEWS[cfg.views] * VISUAL_DIM if pixels else 0
        return spec_for(mode, state_dim=sd, action_dim=ad, visual_dim=visual_dim, text_dim=text.dim,
                        max_len=cfg.max_len, chunk_len=horizon)

    def model_cfg(mode: str, horizon: int) -> Any:
        """`base`, its MLP width matched to event mode's parameter count."""
        return matched_config(base, {"event": spec("event", cfg.chunk_len), mode: spec(mode, horizon)})[mode]

    train_key = {k: v for k, v in asdict(cfg).items() if k in (
        "tasks", "observation", "image_size", "visual_shift", "actions", "camera", "views", "train_episodes", "holdout_frac", "split_seed", "data_base", "fps", "steps", "batch_size", "d_model",
        "n_layers", "n_heads", "max_len", "caption_dropout", "text", "text_dim", "clusters")}
    fits: dict[str, list[tuple[int, dict[str, Any]]]] = {}  # (training seed, its compute) per policy name
    offline: dict[str, list[list[dict[str, Any]]]] = {}

    def sampler_of(episodes: list[Any], mode: str, horizon: int, data_seed: int, weights: str = "uniform",
                   dropout: float | None = None) -> Any:
        return Sampler(episodes, mode, text, max_len=cfg.max_len, chunk_len=horizon,
                       caption_dropout=(cfg.caption_dropout if mode == "event" else 0.0) if dropout is None else dropout,
                       weights=weights, data_seed=data_seed, visual_dim=spec(mode, horizon).visual_dim)

    def trained(name: str, mode: str, weights: str, seed: int, horizon: int, batch_size: int | None = None,
                plateau: bool = False) -> str:
        """The policy directory of (variant, seed), trained unless an identical one is cached; with
        `plateau`, trained until the validation action loss on the held-out episodes stops falling."""
        pdir = work / "policies" / f"{name}-seed{seed}"
        bs = batch_size or cfg.batch_size
        stop = [cfg.plateau_every, cfg.plateau_patience, cfg.plateau_max_steps] if plateau else None
        k = key(code_hash(), train_key, data_key, mode, weights, seed, horizon, cfg.n_action_steps, bs, stop)
        cached = _read_json(pdir / "study_train.json")
        if cached and cached.get("key") == k and (pdir / "config.json").exists():
            comp, off_run = cached["compute"], cached["offline"]
        else:
            sampler = sampler_of(tr, mode, horizon, 1000 + seed, weights)
            until = None
            if plateau:  # fixed batches of the held-out episodes, the same for every seed of a mode
                vs = sampler_of(ho, mode, horizon, VAL_DATA_SEED, dropout=0.0)
                until = Plateau([vs.batch(64) for _ in range(8)], every=cfg.plateau_every,
                                patience=cfg.plateau_patience, max_steps=cfg.plateau_max_steps)
            model, comp = fit(mode, sampler, model_cfg(mode, horizon), spec(mode, horizon), stats, steps=cfg.steps,
                              batch_size=bs, train_seed=seed, plateau=until)
            off_run = offline_metrics(model, ho, text)
            settings = PolicySettings(visual=PIXEL_ENCODER if pixels else "zeros", text=cfg.text, task_encoder="text",
                                      privileged_state=not pixels,
                                      fps=cfg.fps, n_action_steps=cfg.n_action_steps if mode == "unified" else None,
                                      text_source="planner" if mode == "event" else "task",
                                      extra={"planner": planner.to_dict()} if mode == "event" else {})
            Policy(model, settings, text_encoder=text.encoder).save(pdir)
            _write_json(pdir / "study_train.json", {"key": k, "compute": comp, "offline": off_run})
        fits.setdefault(name, []).append((seed, comp))
        offline.setdefault(name, []).append(off_run)
        return str(pdir)

    def evaluate(jobs: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
        t = time.perf_counter()
        results: list[dict[str, Any]] = []
        step = max(1, len(jobs) // 10)
        for i, r in enumerate(_pool_map(_eval_job, jobs, cfg.workers)):
            results.append(r)
            if (i + 1) % step == 0:
                log(f"{what}: {i + 1}/{len(jobs)} jobs ({time.perf_counter() - t:.0f} s)")
        return results

    def blocks(per_policy: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
        """Jobs of EVAL_BLOCK environment seeds, every policy's first block first (a run cut short
        has the same first seeds for every policy)."""
        return [{**pp, "tasks": [t], "seeds": seeds[b:b + EVAL_BLOCK], "fps": cfg.fps, "max_seconds": cfg.max_seconds,
                 "size": cfg.image_size, "camera": cfg.camera, "views": cfg.views}
                for b in range(0, len(seeds), EVAL_BLOCK) for t in cfg.tasks for pp in per_policy]

    # 3. the chunk sweep on validation seeds
    t0 = time.perf_counter()
    configs = chunk_configs(cfg)
    sweep: dict[str, Any] = {}
    if len(configs) > 1:
        vseeds = list(range(cfg.val_first_train_seed, cfg.val_first_train_seed + cfg.val_train_seeds))
        venv = eval_seeds(cfg.val_env_seeds, cfg.val_seed_base)
        per_policy = []
        for s in vseeds:
            for h in sorted({c["chunk_len"] for c in configs}):
                pdir = trained(f"val-chunk-H{h}", "chunk", "uniform", s, h)
                per_policy += [{"policy": pdir, "train_seed": s, "variant": c["name"], "hold": "foh",
                                "n_action_steps": c["n_action_steps"], "temporal_ensemble": c["temporal_ensemble"]}
                               for c in configs if c["chunk_len"] == h]
        res = evaluate(blocks(per_policy, venv), "chunk sweep")
        vkeys = [(t, sd_) for t in cfg.tasks for sd_ in venv]
        for c in configs:
            eps = [{**e, "train_seed": r["train_seed"]} for r in res if r["variant"] == c["name"] for e in r["episodes"]]
            ms, mp = _matrix(eps, "success", vkeys, vseeds), _matrix(eps, "progress", vkeys, vseeds)
            sweep[c["name"]] = {**c, "success_rate": float(np.nanmean(ms)), "progress_mean": float(np.nanmean(mp)),
                                "success_ci95": summarize_variant(ms, mp)["success_ci95"]}
        best = max(configs, key=lambda c: (sweep[c["name"]]["success_rate"], sweep[c["name"]]["progress_mean"]))
    else:
        best = configs[0]
    timings["sweep_s"] = time.perf_counter() - t0
    log(f"chunk sweep: best {best['name']} ({timings['sweep_s']:.0f} s)")

    # 4. training the final variants
    t0 = time.perf_counter()
    tseeds = list(range(cfg.first_train_seed, cfg.first_train_seed + cfg.train_seeds))
    ablation_seeds = tseeds[:cfg.hold_ablation_seeds]
    per_policy = []
    for s in tseeds:
        ev = trained("event", "event", "uniform", s, cfg.chunk_len)
        ch = trained("chunk_best", "chunk", "uniform", s, best["chunk_len"])
        chunk_run = {"n_action_steps": best["n_action_steps"], "temporal_ensemble": best["temporal_ensemble"]}
        per_policy += [
            {"policy": ev, "train_seed": s, "variant": "event", "hold": "foh"},
            {"policy": ev, "train_seed": s, "variant": "event_captions_off", "hold": "foh", "captions_off": True},
            {"policy": trained("event_balanced", "event", "balanced", s, cfg.chunk_len), "train_seed": s,
             "variant": "event_balanced", "hold": "foh"},
            {"policy": trained("unified", "unified", "uniform", s, cfg.chunk_len), "train_seed": s,
             "variant": "unified", "hold": "foh"},
            {"policy": ch, "train_seed": s, "variant": "chunk_best", "hold": "foh", **chunk_run}]
        if s in ablation_seeds:
            for hold in cfg.holds:
                per_policy += [{"policy": ev, "train_seed": s, "variant": f"event@{hold}", "hold": hold},
                               {"policy": ch, "train_seed": s, "variant": f"chunk_best@{hold}", "hold": hold,
                                **chunk_run}]
        log(f"trained seed {s} ({time.perf_counter() - t0:.0f} s)")
    matched: dict[str, Any] = {}
    if cfg.matched_seeds:  # the equal-budget ablation
        modes = {"event": ("event", cfg.chunk_len), "chunk_best": ("chunk", best["chunk_len"]),
                 "unified": ("unified", cfg.chunk_len)}
        per_sample = {v: actions_per_sample(sampler_of(tr, m, h, PROBE_DATA_SEED)) for v, (m, h) in modes.items()}
        budget = per_sample["event"] * cfg.batch_size
        for v, (m, h) in modes.items():
            matched[v] = {"mode": m, "horizon": h, "actions_per_sample": per_sample[v],
                          "batch_size": max(1, round(budget / per_sample[v])), "budget": budget}
        for s in tseeds[:cfg.matched_seeds]:
            for v, (m, h) in modes.items():
                pdir = trained(f"matched-{v}", m, "uniform", s, h, batch_size=matched[v]["batch_size"], plateau=True)
                run: dict[str, Any] = {}
                if v == "chunk_best":
                    run = {"n_action_steps": best["n_action_steps"], "temporal_ensemble": best["temporal_ensemble"]}
                per_policy.append({"policy": pdir, "train_seed": s, "variant": f"{v}@matched", "hold": "foh", **run})
            log(f"trained the equal-budget ablation, seed {s} ({time.perf_counter() - t0:.0f} s)")
    if cfg.hold_baseline:  # one "training seed" column
        per_policy.append({"policy": "hold", "train_seed": 0, "variant": "hold", "cache": str(work / "hold")})
    timings["train_s"] = time.perf_counter() - t0

    # 5. closed-loop evaluation on the final environment seeds
    t0 = time.perf_counter()
    seeds_env = eval_seeds(cfg.env_seeds, cfg.seed_base)
    results = evaluate(blocks(per_policy, seeds_env), "evaluation")
    timings["eval_s"] = time.perf_counter() - t0

    # 6. report
    keys = [(t, s) for t in cfg.tasks for s in seeds_env]
    eps_by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        eps_by.setdefault(r["variant"], []).extend({**e, "train_seed": r["train_seed"]} for e in r["episodes"])

    matched_seeds = tseeds[:cfg.matched_seeds]

    def seeds_of(v: str) -> list[int]:
        return [0] if v == "hold" else matched_seeds if v.endswith("@matched") else ablation_seeds if "@" in v else tseeds

    all_mats = {v: (_matrix(e, "success", keys, seeds_of(v)), _matrix(e, "progress", keys, seeds_of(v)))
                for v, e in eps_by.items()}
    per_task = {v: {t: summarize_variant(m[0][[i for i, k in enumerate(keys) if k[0] == t]],
                                         m[1][[i for i, k in enumerate(keys) if k[0] == t]]) for t in cfg.tasks}
                for v, m in all_mats.items()}
    included = included_tasks(per_task, cfg.tasks)
    rows_in = [i for i, k in enumerate(keys) if k[0] in included]
    mats = {v: (m[0][rows_in], m[1][rows_in]) for v, m in all_mats.items()}
    raw = [{"variant": v, "train_seed": e["train_seed"], "task": e["task"], "seed": e["seed"],
            "success": bool(e["success"]), "progress": float(e["progress"]), "steps": int(e["steps"])}
           for v, es in eps_by.items() for e in es]
    summary = {v: summarize_variant(*m) for v, m in mats.items()}
    cols = {s: j for j, s in enumerate(tseeds)}
    abl = [cols[s] for s in ablation_seeds]
    contrasts: list[tuple[str, str, list[int] | None]] = [
        ("event", "chunk_best", None), ("event", "unified", None), ("unified", "chunk_best", None),
        ("event_balanced", "event", None), ("event", "event_captions_off", None)]
    for hold in cfg.holds:
        contrasts += [(f"event@{hold}", "event", abl), (f"chunk_best@{hold}", "chunk_best", abl)]
    contrasts += [("event@matched", "chunk_best@matched", None), ("event@matched", "unified@matched", None)]
    primary = f"{cfg.primary[0]} - {cfg.primary[1]}"
    comparisons: dict[str, Any] = {}
    for a, b, sub in contrasts:
        if a in mats and b in mats:
            ma, mb = mats[a], mats[b]
            if sub is not None:  # the ablation seeds only, for the side that has every seed
                ma = ma if "@" in a else (ma[0][:, sub], ma[1][:, sub])
                mb = mb if "@" in b else (mb[0][:, sub], mb[1][:, sub])
            comparisons[f"{a} - {b}"] = {"success": paired(ma[0], mb[0]), "progress": paired(ma[1], mb[1]),
                                         "role": "primary" if f"{a} - {b}" == primary else "exploratory"}
    for metric in ("success", "progress"):
        adj = holm({k: v[metric]["p"] for k, v in comparisons.items() if v["role"] == "exploratory"})
        for k, p in adj.items():
            comparisons[k][metric]["p_holm"] = p
    for v, m in matched.items():  # the equal-budget ablation's training runs, per seed
        m["runs"] = [{"train_seed": seed, **{k: c.get(k) for k in ("steps", "best_step", "best_val_loss", "stopped",
                                                                   "actions_per_step", "params")}}
                     for seed, c in fits.get(f"matched-{v}", [])]
    off = {}
    for name, runs in offline.items():
        if name.startswith(("val-", "matched-")):  # the ablation stopped on the held-out episodes' loss
            continue
        per_ep = np.mean([[e["action_mse"] for e in run] for run in runs], 0)
        off[name] = {"action_mse": float(per_ep.mean()), "ci95": list(boot_mean_ci(per_ep, 3)),
                     "episodes": len(per_ep)}
    res = {"config": asdict(cfg), "code": code_hash(), "timings_s": {k: round(v, 1) for k, v in timings.items()},
           "data": {"episodes": len(episodes), "train_episodes": len(tr), "heldout_episodes": len(ho),
                    "events": len(rows), "train_events": int(sum(len(e.starts) for e in tr)),
                    "replay_success": replay_ok, "event_len_mean": float(lengths.mean()),
                    "event_len_p90": float(np.percentile(lengths, 90)),
                    "event_len_over_max_len": float((lengths > cfg.max_len).mean())},
           "caption_check": captions, "sweep": sweep, "chunk_best": best, "primary": primary,
           "tasks_included": included, "task_inclusion": TASK_INCLUSION,
           "compute": {k: runs[0][1] for k, runs in fits.items() if not k.startswith(("val-", "matched-"))},
           "summary": summary,
           "per_task": per_task, "comparisons": comparisons, "offline": off, "planner": planner.to_dict(),
           "train_seeds": tseeds, "hold_ablation_seeds": ablation_seeds, "matched": matched,
           "matched_seeds": matched_seeds,
           "offline_per_episode": {k: v for k, v in offline.items() if not k.startswith(("val-", "matched-"))},
           "episodes": raw}
    res.update(headline(res))
    out_md.write_text(format_study(res))
    out_md.with_suffix(".json").write_text(json.dumps(res, indent=1))
    log(f"wrote {out_md} and {out_md.with_suffix('.json')}")
    return res


def headline(res: dict[str, Any]) -> dict[str, Any]:
    """The flat fields a reader of study.json looks for first: every contrast (name, metric, primary,
    diff, CI), the chunk sweep (length, executed steps, ensembling, validation success and CI), the
    number of training seeds and environment episodes, and the code hash."""
    contrasts = [{"name": k, "metric": m, "primary": v["role"] == "primary" and m == "success",
                  "diff": v[m]["diff"], "ci_low": v[m]["ci95"][0], "ci_high": v[m]["ci95"][1], "p": v[m]["p"],
                  "p_holm": v[m].get("p_holm")}
                 for k, v in res["comparisons"].items() for m in ("success", "progress")]
    sweep = [{"name": k, "chunk_len": v["chunk_len"], "n_exec": v["n_action_steps"] or v["chunk_len"],
              "ensembling": v["temporal_ensemble"], "success": v["success_rate"],
              "ci_low": (v.get("success_ci95") or [None, None])[0], "ci_high": (v.get("success_ci95") or [None, None])[1],
              "progress": v["progress_mean"], "chosen": k == res["chunk_best"]["name"]}
             for k, v in res["sweep"].items()]
    return {"contrasts": contrasts, "chunk_sweep": sweep, "n_train_seeds": len(res["train_seeds"]),
            "caption_accuracy": (res.get("caption_check") or {}).get("class_accuracy"),
            "n_env_episodes": int(next(iter(res["summary"].values()))["env_episodes"]), "code_hash": res["code"]}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _p(x: float | None) -> str:
    return "" if x is None else "<0.001" if x < 0.001 else f"{x:.3f}"


def format_study(res: dict[str, Any]) -> str:
    c, d = res["config"], res["data"]
    best = res["chunk_best"]
    prim = res["comparisons"].get(res["primary"])
    obs = c.get("observation", "privileged")
    title = ("rendered observations" if obs == "pixels" else "privileged state")
    lines = [f"# Closed-loop study ({title}): {', '.join(c['tasks'])}", "",
             (f"Every policy sees its proprioception and the rendered camera image ({c.get('image_size')} px) through "
              f"the same image input and encoder for every mode (`{PIXEL_ENCODER}`: the frame at {PIXEL_SIDE} x "
              f"{PIXEL_SIDE} through the model's conv stem, convolutions + spatial softmax, trained with each "
              "policy); no simulator object pose." if obs == "pixels" else
              "Every policy sees its proprioception followed by the simulator's object poses and goal point "
              "(privileged state, no images).")
             + (" Every mode predicts its joint targets as offsets from the joints measured at the plan's start "
                "(relative actions; the gripper command stays absolute)." if c.get("actions") == "relative" else "")
             + (" The camera is fixed: every scene, demonstrated or evaluated, is seen from one pose "
                "(`sim.scene.CameraPose.nominal`), not from a pose drawn per scene." if c.get("camera") == "fixed"
                else "")
             + (" Two cameras are rendered, the front camera and the wrist camera on the hand, each frame through "
                "its own convolutions and spatial softmax into the one image token (robomimic's agentview + "
                "eye-in-hand)." if c.get("views") == "front+wrist" else ""),
             "",
             f"**Primary contrast, named in the configuration before the run:** `{res['primary']}`, closed-loop "
             f"success on the final environment seeds (base {c['seed_base']}, used by no development run). "
             "Every other contrast is exploratory; their p-values are Holm-adjusted.", ""]
    inc = res.get("tasks_included")
    if inc is not None:
        dropped = [t for t in c["tasks"] if t not in inc]
        lines += [f"**Tasks:** a task type enters the pooled rows and contrasts only if its best main variant "
                  f"succeeds more than {_pct(res['task_inclusion'])} of the time (rule fixed in paper/plan.md before "
                  f"the run). Included: {', '.join(inc)}"
                  + (f"; left out: {', '.join(dropped)} (every mode at or below the bar; per-task rows below)."
                     if dropped else "."), ""]
    if prim:
        s, p = prim["success"], prim["progress"]
        lines += [f"**Primary result:** {res['primary']} = {100 * s['diff']:+.1f} pp success (95% CI "
                  f"{100 * s['ci95'][0]:+.1f} to {100 * s['ci95'][1]:+.1f}, bootstrap p {_p(s['p'])}); progress "
                  f"{p['diff']:+.1f} ({p['ci95'][0]:+.1f} to {p['ci95'][1]:+.1f}).", ""]
    cap = res.get("caption_check")
    if cap:
        lines += [f"**Captions checked first:** the study's captions against the simulator's own phases (verb class "
                  f"at each event's middle frame): {_pct(cap['class_accuracy'])} of {cap['events']} events ("
                  + ", ".join(f"{t} {_pct(a)}" for t, a in cap["per_task"].items()) + "); gate "
                  f"{_pct(cap['gate'])}: " + ("passed, so captions-off measures language." if cap["passed"] else
                                              "**not passed: the captions-off contrast is no test of language.**"),
                  ""]
    lines += [f"{d['train_episodes']} training / {d['heldout_episodes']} held-out episodes ({d['events']} events; "
              f"mean event length {d['event_len_mean']:.1f} steps), {c['train_seeds']} training seeds x "
              f"{c['env_seeds']} environment seeds per task, {c['steps']} steps of batch {c['batch_size']}, "
              f"text encoder `{c['text']}` for every mode, code `{res['code']}`. 95% CIs: two-level bootstrap "
              "(training seeds and environment episodes resampled independently).", "",
              f"The chunk baseline is `{best['name']}` (chunk length {best['chunk_len']}, "
              + (f"ACT temporal ensembling m={best['temporal_ensemble']}" if best["temporal_ensemble"] is not None
                 else f"{best['n_action_steps']} executed steps per plan")
              + f"), the best of {len(res['sweep']) or 1} configurations on the validation set "
              f"({c['val_train_seeds']} training seeds from {c['val_first_train_seed']}, {c['val_env_seeds']} "
              f"environment seeds per task from base {c['val_seed_base']}).", ""]
    if res["sweep"]:
        lines += ["| chunk configuration (validation) | success (95% CI, two-level) | progress |", "|---|---|---|"]
        for name, v in sorted(res["sweep"].items(), key=lambda kv: -kv[1]["success_rate"]):
            lo, hi = v.get("success_ci95") or (float("nan"), float("nan"))
            lines.append(f"| {name}{' (best)' if name == best['name'] else ''} | {_pct(v['success_rate'])} "
                         f"({_pct(lo)}-{_pct(hi)}) | {v['progress_mean']:.1f} |")
        lines.append("")
    lines += ["| variant | success (95% CI) | progress (95% CI) | success per training seed |", "|---|---|---|---|"]
    for v, s in res["summary"].items():
        lo, hi = s["success_ci95"]
        plo, phi = s["progress_ci95"]
        lines.append(f"| {v} | {_pct(s['success_rate'])} ({_pct(lo)}-{_pct(hi)}) | {s['progress_mean']:.1f} "
                     f"({plo:.1f}-{phi:.1f}) | {', '.join(_pct(x) for x in s['success_per_train_seed'])} |")
    lines += ["", "Per task type (success / progress):", "", "| variant | " + " | ".join(c["tasks"]) + " |",
              "|---|" + "---|" * len(c["tasks"])]
    for v, per in res["per_task"].items():
        lines.append(f"| {v} | " + " | ".join(f"{_pct(per[t]['success_rate'])} / {per[t]['progress_mean']:.1f}"
                                              for t in c["tasks"]) + " |")
    lines += ["", "Paired differences (same environment episodes and training seeds; `@hold` rows: the hold "
              f"ablation on training seeds {res['hold_ablation_seeds']}):", "",
              "p: two-sided bootstrap p-value, Holm-adjusted over the exploratory contrasts; the primary "
              "contrast's is not adjusted.", "",
              "| contrast | role | success diff (95% CI) | p | progress diff (95% CI) | p |",
              "|---|---|---|---|---|---|"]
    for k, v in res["comparisons"].items():
        s, p = v["success"], v["progress"]
        lines.append(f"| {k} | {v['role']} | {100 * s['diff']:+.1f} pp ({100 * s['ci95'][0]:+.1f}, "
                     f"{100 * s['ci95'][1]:+.1f}) | {_p(s.get('p_holm', s['p']))} | {p['diff']:+.1f} "
                     f"({p['ci95'][0]:+.1f}, {p['ci95'][1]:+.1f}) | {_p(p.get('p_holm', p['p']))} |")
    lines += ["", "Offline (held-out episodes, episode-level bootstrap; normalised action MSE from each mode's "
              "own decision points, so modes predict different spans):", "",
              "| model | action MSE (95% CI) | params | tokens / step | supervised actions / step |",
              "|---|---|---|---|---|"]
    for k, v in res["offline"].items():
        comp = res["compute"].get(k, {})
        lines.append(f"| {k} | {v['action_mse']:.3f} ({v['ci95'][0]:.3f}-{v['ci95'][1]:.3f}) | "
                     f"{comp.get('params', '')} | {comp.get('tokens_per_step', '')} | "
                     f"{comp.get('actions_per_step', 0):.0f} |")
    lines += format_matched(res)
    t = res["timings_s"]
    lines += ["", f"Time: data {t.get('data_s', 0):.0f} s, chunk sweep {t.get('sweep_s', 0):.0f} s, training "
              f"{t.get('train_s', 0):.0f} s, evaluation {t.get('eval_s', 0):.0f} s.", ""]
    return "\n".join(lines)


def format_matched(res: dict[str, Any]) -> list[str]:
    """The equal-budget ablation's section: batch sizes, steps to the plateau, closed-loop results."""
    matched = res.get("matched") or {}
    if not matched:
        return []
    budget = next(iter(matched.values()))["budget"]
    lines = ["", f"Equal budget, trained to a plateau (training seeds {res.get('matched_seeds')}): every mode gets "
             f"event mode's supervised action positions per optimiser step ({budget:.0f}; each mode's batch size "
             "from its measured actions per sample) and trains until its action loss on fixed batches of the held-out "
             "episodes stops falling (checked every "
             f"{res['config']['plateau_every']} steps; stop after {res['config']['plateau_patience']} checks without "
             f"a 1% gain, at most {res['config']['plateau_max_steps']} steps; the best check's weights are kept). "
             "The held-out episodes choose when to stop here, so this ablation reports no held-out MSE.", "",
             "| variant | batch | actions / sample | actions / step | steps trained (best) per seed | stopped | "
             "success (95% CI) | progress |", "|---|---|---|---|---|---|---|---|"]
    for v, m in matched.items():
        runs = m.get("runs") or []
        s = res["summary"].get(f"{v}@matched")
        ok = f"{_pct(s['success_rate'])} ({_pct(s['success_ci95'][0])}-{_pct(s['success_ci95'][1])})" if s else ""
        lines.append(f"| {v}@matched | {m['batch_size']} | {m['actions_per_sample']:.1f} | "
                     f"{(sum(r['actions_per_step'] for r in runs) / max(1, len(runs))):.0f} | "
                     + ", ".join(f"{r['steps']} ({r['best_step']})" for r in runs) + " | "
                     + ", ".join(sorted({str(r['stopped']) for r in runs})) + f" | {ok} | "
                     + (f"{s['progress_mean']:.1f}" if s else "") + " |")
    return lines
