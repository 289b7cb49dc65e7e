"""The closed-loop study behind `carve eval-sim --study`: does event-grounded training beat chunks?

    carve eval-sim --study --out paper/study.md            # writes study.md and study.json

One command, in one process (plus `--workers` evaluation processes), on a privileged-state pilot
(the state is the robot's state followed by the simulator's object poses and goal point; no
images), so control failures are not confused with perception failures:

1. **Data.** `--train-episodes` demonstrations (task types round-robin, episode `i` is
   `carve synth`'s scene `episode_seed(data_base, i)`, rendered off) are recorded by the
   scripted operator and replayed in a privileged `SimEnv`: the env's observation before each
   action (state + `object_state`) becomes the row's `state` / `env_state`, exactly what a
   policy sees at every decision point. Each episode becomes Carve event rows through the
   house's own ingest (`ingest.events.episode_events`: segmenter, per-event slices, the
   `env_state` column), kinematic captions (`captioners.kinematic`), and the balance: k-means
   (`clustering.kmeans`) on each event's motion descriptor + caption embedding, with a weight
   of 1 / cluster size per event (the per-row sampling weight of balanced shards; the
   unbalanced catalog weighs every event 1). Both read the same rows.
2. **Split.** Held-out episodes are drawn at the episode level from the unique events
   (`split_seed`), the same for every run; normalisation comes from training episodes only.
3. **Training.** Event, unified and chunk models over `--train-seeds` seeds (training seed i
   initialises the weights, data seed 1000 + i draws the batches), all with the same text
   encoder (`--text`), the same backbone and a matched parameter count (MLP width per mode);
   event mode also on the balanced weights. Event mode trains with length-aware caption
   dropout (`--caption-dropout`), so it can also run captions-off.
4. **Evaluation.** Every policy acts closed loop on the same `--env-seeds` environment seeds
   per task type (`eval_sim.eval_seeds`): event with the caption planner
   (`trainer.planner.CaptionPlanner`, fitted on the training episodes' phases) and
   captions-off (task text only), executing its predicted length; chunk and unified re-plan
   every `--n-action-steps`.
5. **Report.** Per variant: success rate and progress, mean over training seeds, with a 95%
   percentile-bootstrap CI over environment episodes (task, seed) and the spread over training
   seeds; paired bootstrap CIs of event - chunk, event - unified, balanced - unbalanced and
   planner - captions-off on the same environment episodes; held-out action MSE per mode with
   an episode-level bootstrap; parameters and compute per mode. Markdown + JSON.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BOOT = 2000
EVAL_BLOCK = 10  # environment seeds per evaluation job
DATA_SEED_BASE = 0  # carve synth's default --seed: the training scenes
STUDY_TASKS = ("pick_place", "push")


@dataclass
class StudyConfig:
    tasks: list[str] = field(default_factory=lambda: list(STUDY_TASKS))
    train_episodes: int = 40
    holdout_frac: float = 0.2
    split_seed: int = 0
    data_base: int = DATA_SEED_BASE
    fps: int = 12
    train_seeds: int = 5
    first_train_seed: int = 0  # training seeds first_train_seed .. first_train_seed + train_seeds - 1
    env_seeds: int = 50
    seed_base: int = 10_000
    steps: int = 300
    batch_size: int = 32
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 32
    chunk_len: int = 8
    n_action_steps: int = 4
    caption_dropout: float = 0.3
    text: str = "hashed"  # the one text encoder: "hashed" (feature hashing) or "minilm"
    text_dim: int = 128
    clusters: int = 0  # k for the balance (0: sqrt of the event count)
    workers: int = 2
    hold_baseline: bool = True  # also evaluate the do-nothing policy (what a task gives for free)
    max_seconds: float | None = None


# ----------------------------------------------------------------------------- data
def record_episode(task: str, seed: int, fps: int) -> dict[str, Any]:
    """The scripted demonstration of (task, seed), replayed in a privileged env: per step the
    observation before the action (state, object_state) and the action."""
    from carve.sim.env import MAX_SECONDS, SimEnv
    from carve.sim.tasks import run_episode

    ep = run_episode(task, seed, fps=fps, render=False)
    states, envs, actions = [], [], []
    with SimEnv(fps=fps, render=False, privileged=True,
                max_seconds=max(MAX_SECONDS[task], ep.length / fps + 1.0)) as env:
        obs = env.reset(task, seed)
        info: dict[str, Any] = {"success": False}
        for a in ep.action:
            states.append(obs["state"])
            envs.append(obs["privileged"]["object_state"])
            actions.append(a)
            obs, _, done, info = env.step(a)
            if done:
                break
    return {"task": ep.task, "task_type": task, "seed": seed, "state": np.asarray(states, np.float32),
            "env_state": np.asarray(envs, np.float32), "action": np.asarray(actions, np.float32),
            "state_names": ep.state_names, "action_names": ep.action_names, "replay_success": bool(info["success"])}


def episode_rows(rec: dict[str, Any], index: int, fps: int) -> list[dict[str, Any]]:
    """Carve event rows of one recorded episode (house ingest + kinematic captions)."""
    from carve.captioners.base import EventView
    from carve.captioners.kinematic import caption_episode_events, event_phases
    from carve.core.config import SegmentConfig
    from carve.ingest.events import ENV_STATE_FEATURE, episode_events
    from carve.ingest.sources.base import Episode, EpisodeRef

    n = len(rec["action"])
    ep = Episode(ref=EpisodeRef("sim://study", "sim", "study", index), fps=float(fps), task=rec["task"],
                 state=rec["state"], action=rec["action"], timestamps=np.arange(n) / fps,
                 state_names=list(rec["state_names"]), action_names=list(rec["action_names"]), cameras=[],
                 robot="panda", extras={ENV_STATE_FEATURE: rec["env_state"]})
    rows = episode_events(ep, SegmentConfig(), None)
    views = [EventView(episode_id=r["episode_id"], event_index=r["event_index"], num_events=r["num_events"],
                       task=r["task"], start_frame=r["start_frame"], end_frame=r["end_frame"], fps=r["fps"],
                       start_reason=r["start_reason"] or "", boundary_reason=r["boundary_reason"] or "",
                       state=np.asarray(r["state"], np.float32), action=np.asarray(r["action"], np.float32),
                       gripper=np.asarray(r["gripper"], np.float32)) for r in rows]
    caps = caption_episode_events(views)
    phases = event_phases(views)
    for r, c, p in zip(rows, caps, phases, strict=True):
        r["caption"] = c
        r["phase"] = [p.phase, p.arm, int(p.cycle)]
        r["task_type"] = rec["task_type"]
    return rows


def _recorded_rows(cfg: StudyConfig, work: Path) -> tuple[list[dict[str, Any]], int]:
    """The training demonstrations' event rows, cached in `work` by (tasks, episodes, seed, fps)."""
    import hashlib
    import pickle

    from carve.sim.synth import episode_seed

    key = hashlib.sha1(json.dumps([cfg.tasks, cfg.train_episodes, cfg.data_base, cfg.fps]).encode()).hexdigest()[:12]
    cache = work / f"rows-{key}.pkl"
    if cache.exists():
        rows, ok = pickle.loads(cache.read_bytes())
        return rows, ok
    rows, ok = [], 0
    for i in range(cfg.train_episodes):
        task = cfg.tasks[i % len(cfg.tasks)]
        rec = record_episode(task, episode_seed(cfg.data_base, i), cfg.fps)
        ok += rec["replay_success"]
        rows.extend(episode_rows(rec, i, cfg.fps))
    work.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps((rows, ok)))
    return rows, ok


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


def _eval_job(job: dict[str, Any]) -> dict[str, Any]:
    """Evaluate one policy variant on (task, seeds); episodes already in its cache are reused."""
    import torch

    from carve.sim.eval_sim import evaluate_policy
    from carve.trainer.policy import Policy

    torch.set_num_threads(1)
    cache = Path(job.get("cache") or job["policy"]) / "study_eval" / job["variant"]
    cond = {"fps": job["fps"], "max_seconds": job["max_seconds"]}
    episodes, todo = [], []
    for task in job["tasks"]:
        for seed in job["seeds"]:
            hit = _read_json(cache / f"{task}-{seed}.json")
            if hit and hit.get("cond") == cond:
                episodes.append(hit["episode"])
            else:
                todo.append((task, seed))
    if todo:
        policy: Any = HoldPolicy(job["fps"]) if job["policy"] == "hold" else Policy.load(job["policy"])
        if job.get("captions_off"):
            policy.settings.text_source = "task"
            policy.planner = None
        cache.mkdir(parents=True, exist_ok=True)
        for task, seed in todo:
            e = evaluate_policy(policy, [task], [seed], fps=job["fps"], max_seconds=job["max_seconds"])["episodes"][0]
            (cache / f"{task}-{seed}.json").write_text(json.dumps({"cond": cond, "episode": e}))
            episodes.append(e)
    return {"variant": job["variant"], "train_seed": job["train_seed"], "episodes": episodes}


# ----------------------------------------------------------------------------- statistics
def boot_mean_ci(x: np.ndarray, seed: int = 0, n_boot: int = BOOT) -> tuple[float, float]:
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
    s, p = np.nanmean(m_succ, 1), np.nanmean(m_prog, 1)
    return {"success_rate": float(s.mean()), "success_ci95": list(boot_mean_ci(s)),
            "progress_mean": float(p.mean()), "progress_ci95": list(boot_mean_ci(p, 1)),
            "success_per_train_seed": np.nanmean(m_succ, 0).round(4).tolist(),
            "progress_per_train_seed": np.nanmean(m_prog, 0).round(2).tolist(),
            "env_episodes": int(m_succ.shape[0]), "train_seeds": int(m_succ.shape[1])}


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    d = np.nanmean(a, 1) - np.nanmean(b, 1)
    lo, hi = boot_mean_ci(d, 2)
    return {"diff": float(d.mean()), "ci95": [lo, hi]}


# ----------------------------------------------------------------------------- the study
def run_study(cfg: StudyConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the whole study; writes `<out>` (markdown; `.md` added if absent) and the JSON beside it."""
    import torch

    from carve.sim.eval_sim import eval_seeds
    from carve.sim.study_episodes import Sampler, TextCache, episodes_from_rows, norm_stats, split_episodes
    from carve.sim.study_fit import fit, matched_config, offline_metrics, spec_for
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

    # 1. data
    t0 = time.perf_counter()
    rows, replay_ok = _recorded_rows(cfg, work)
    text = TextCache(make_text_encoder(cfg.text, cfg.text_dim))
    text.warm([r["caption"] for r in rows] + [r["task"] for r in rows])
    w = balance_weights(rows, text, cfg.clusters, cfg.split_seed)
    for r, wi in zip(rows, w, strict=True):
        r["weight"] = float(wi)
    timings["data_s"] = time.perf_counter() - t0
    log(f"data: {cfg.train_episodes} episodes, {len(rows)} events, replay success {replay_ok}/"
        f"{cfg.train_episodes} ({timings['data_s']:.0f} s)")

    # 2. split, normalisation
    episodes = episodes_from_rows(rows, privileged=True)
    train_ids, held_ids = split_episodes([e.episode_id for e in episodes], cfg.holdout_frac, cfg.split_seed)
    tr = [e for e in episodes if e.episode_id in set(train_ids)]
    ho = [e for e in episodes if e.episode_id in set(held_ids)]
    stats = norm_stats(tr)
    planner = CaptionPlanner.fit([(e.task, [tuple(r["phase"]) for r in rows if r["episode_id"] == e.episode_id])
                                  for e in tr])
    lengths = np.concatenate([e.ends - e.starts for e in tr])
    sd, ad = tr[0].state.shape[1], tr[0].action.shape[1]
    specs = {m: spec_for(m, state_dim=sd, action_dim=ad, visual_dim=0, text_dim=text.dim, max_len=cfg.max_len,
                         chunk_len=cfg.chunk_len) for m in ("event", "unified", "chunk")}
    base = ModelConfig(d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, block_size=4)
    mcfg = matched_config(base, specs)

    # 3. training
    t0 = time.perf_counter()
    variants = [("event", "event", "uniform"), ("event_balanced", "event", "balanced"),
                ("unified", "unified", "uniform"), ("chunk", "chunk", "uniform")]
    compute: dict[str, Any] = {}
    offline: dict[str, list[list[dict[str, Any]]]] = {}
    jobs: list[dict[str, Any]] = []
    seeds_env = eval_seeds(cfg.env_seeds, cfg.seed_base)
    tseeds = list(range(cfg.first_train_seed, cfg.first_train_seed + cfg.train_seeds))
    train_key = {k: v for k, v in asdict(cfg).items() if k not in (
        "env_seeds", "seed_base", "train_seeds", "first_train_seed", "workers", "max_seconds", "hold_baseline")}
    per_policy: list[dict[str, Any]] = []
    for s in tseeds:
        for name, mode, weights in variants:
            pdir = work / "policies" / f"{name}-seed{s}"
            cached = _read_json(pdir / "study_train.json")
            if cached and cached.get("key") == train_key and (pdir / "config.json").exists():
                comp, off_run = cached["compute"], cached["offline"]
            else:
                sampler = Sampler(tr, mode, text, max_len=cfg.max_len, chunk_len=cfg.chunk_len,
                                  caption_dropout=cfg.caption_dropout if mode == "event" else 0.0, weights=weights,
                                  data_seed=1000 + s, visual_dim=specs[mode].visual_dim)
                model, comp = fit(mode, sampler, mcfg[mode], specs[mode], stats, steps=cfg.steps,
                                  batch_size=cfg.batch_size, train_seed=s)
                off_run = offline_metrics(model, ho, text)
                settings = PolicySettings(visual="zeros", text=cfg.text, task_encoder="text", privileged_state=True,
                                          fps=cfg.fps, n_action_steps=None if mode == "event" else cfg.n_action_steps,
                                          text_source="planner" if mode == "event" else "task",
                                          extra={"planner": planner.to_dict()} if mode == "event" else {})
                Policy(model, settings, text_encoder=text.encoder).save(pdir)
                (pdir / "study_train.json").write_text(json.dumps({"key": train_key, "compute": comp,
                                                                   "offline": off_run}))
            compute.setdefault(name, comp)
            offline.setdefault(name, []).append(off_run)
            per_policy.append({"policy": str(pdir), "train_seed": s, "variant": name})
            if name == "event":
                per_policy.append({"policy": str(pdir), "train_seed": s, "variant": "event_captions_off",
                                   "captions_off": True})
        log(f"trained seed {s} ({time.perf_counter() - t0:.0f} s)")
    if cfg.hold_baseline:  # one "training seed" column
        per_policy.append({"policy": "hold", "train_seed": 0, "variant": "hold",
                           "cache": str(work / "hold")})
    # evaluation jobs: blocks of EVAL_BLOCK environment seeds, every policy's first block first, so a
    # run cut short has the same first seeds for every policy (episodes are cached per policy)
    for b in range(0, len(seeds_env), EVAL_BLOCK):
        for t in cfg.tasks:
            for pp in per_policy:
                jobs.append({**pp, "tasks": [t], "seeds": seeds_env[b:b + EVAL_BLOCK], "fps": cfg.fps,
                             "max_seconds": cfg.max_seconds})
    timings["train_s"] = time.perf_counter() - t0

    # 4. closed-loop evaluation
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as ex:
            for i, r in enumerate(ex.map(_eval_job, jobs)):
                results.append(r)
                if (i + 1) % max(1, len(per_policy)) == 0:
                    log(f"evaluated {i + 1}/{len(jobs)} jobs ({time.perf_counter() - t0:.0f} s)")
    else:
        for i, j in enumerate(jobs):
            results.append(_eval_job(j))
            if (i + 1) % max(1, len(per_policy)) == 0:
                log(f"evaluated {i + 1}/{len(jobs)} jobs ({time.perf_counter() - t0:.0f} s)")
    timings["eval_s"] = time.perf_counter() - t0

    # 5. report
    keys = [(t, s) for t in cfg.tasks for s in seeds_env]
    eps_by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        eps_by.setdefault(r["variant"], []).extend({**e, "train_seed": r["train_seed"]} for e in r["episodes"])
    mats = {v: (_matrix(e, "success", keys, tseeds if v != "hold" else [0]),
                _matrix(e, "progress", keys, tseeds if v != "hold" else [0])) for v, e in eps_by.items()}
    raw = [{"variant": v, "train_seed": e["train_seed"], "task": e["task"], "seed": e["seed"],
            "success": bool(e["success"]), "progress": float(e["progress"]), "steps": int(e["steps"])}
           for v, es in eps_by.items() for e in es]
    summary = {v: summarize_variant(*m) for v, m in mats.items()}
    per_task = {v: {t: summarize_variant(m[0][[i for i, k in enumerate(keys) if k[0] == t]],
                                         m[1][[i for i, k in enumerate(keys) if k[0] == t]]) for t in cfg.tasks}
                for v, m in mats.items()}
    comparisons = {}
    for a, b in (("chunk", "hold"), ("event", "chunk"), ("event", "unified"), ("unified", "chunk"), ("event_balanced", "event"),
                 ("event", "event_captions_off")):
        if a in mats and b in mats:
            comparisons[f"{a} - {b}"] = {"success": paired(mats[a][0], mats[b][0]),
                                         "progress": paired(mats[a][1], mats[b][1])}
    off = {}
    for name, runs in offline.items():
        per_ep = np.mean([[e["action_mse"] for e in run] for run in runs], 0)
        off[name] = {"action_mse": float(per_ep.mean()), "ci95": list(boot_mean_ci(per_ep, 3)),
                     "episodes": len(per_ep)}
    res = {"config": asdict(cfg), "timings_s": {k: round(v, 1) for k, v in timings.items()},
           "data": {"episodes": len(episodes), "train_episodes": len(tr), "heldout_episodes": len(ho),
                    "events": len(rows), "train_events": int(sum(len(e.starts) for e in tr)),
                    "replay_success": replay_ok, "event_len_mean": float(lengths.mean()),
                    "event_len_p90": float(np.percentile(lengths, 90)),
                    "event_len_over_max_len": float((lengths > cfg.max_len).mean())},
           "compute": compute, "summary": summary, "per_task": per_task, "comparisons": comparisons,
           "offline": off, "planner": planner.to_dict(), "train_seeds": tseeds,
           "offline_per_episode": offline, "episodes": raw}
    out_md.write_text(format_study(res))
    out_md.with_suffix(".json").write_text(json.dumps(res, indent=1))
    log(f"wrote {out_md} and {out_md.with_suffix('.json')}")
    return res


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def format_study(res: dict[str, Any]) -> str:
    c, d = res["config"], res["data"]
    lines = [f"# Closed-loop study (privileged-state pilot): {', '.join(c['tasks'])}", "",
             f"{d['train_episodes']} training / {d['heldout_episodes']} held-out episodes ({d['events']} events; "
             f"mean event length {d['event_len_mean']:.1f} steps), {c['train_seeds']} training seeds x "
             f"{c['env_seeds']} environment seeds per task, {c['steps']} steps of batch {c['batch_size']}, "
             f"text encoder `{c['text']}` for every mode. Mean over training seeds; 95% CI: percentile "
             f"bootstrap over environment episodes.", "",
             "| variant | success (95% CI) | progress (95% CI) | success per training seed |", "|---|---|---|---|"]
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
    lines += ["", "Paired differences (same environment episodes; bootstrap 95% CI):", "",
              "| comparison | success diff (95% CI) | progress diff (95% CI) |", "|---|---|---|"]
    for k, v in res["comparisons"].items():
        s, p = v["success"], v["progress"]
        lines.append(f"| {k} | {100 * s['diff']:+.1f} pp ({100 * s['ci95'][0]:+.1f}, {100 * s['ci95'][1]:+.1f}) | "
                     f"{p['diff']:+.1f} ({p['ci95'][0]:+.1f}, {p['ci95'][1]:+.1f}) |")
    lines += ["", "Offline (held-out episodes, episode-level bootstrap; normalised action MSE from each mode's "
              "own decision points, so modes predict different spans):", "",
              "| model | action MSE (95% CI) | params | tokens / step | supervised actions / step |",
              "|---|---|---|---|---|"]
    for k, v in res["offline"].items():
        comp = res["compute"].get(k, {})
        lines.append(f"| {k} | {v['action_mse']:.3f} ({v['ci95'][0]:.3f}-{v['ci95'][1]:.3f}) | "
                     f"{comp.get('params', '')} | {comp.get('tokens_per_step', '')} | "
                     f"{comp.get('actions_per_step', 0):.0f} |")
    t = res["timings_s"]
    lines += ["", f"Time: data {t.get('data_s', 0):.0f} s, training {t.get('train_s', 0):.0f} s, "
              f"evaluation {t.get('eval_s', 0):.0f} s.", ""]
    return "\n".join(lines)
