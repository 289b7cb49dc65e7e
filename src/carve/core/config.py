"""Typed configuration for every Carve stage.

One pydantic model (`CarveConfig`) with a section per stage. It loads from YAML
(`CarveConfig.load(path)`) and takes dotted overrides from the CLI
(`--set segment.min_len_s=0.3`, values parsed as YAML scalars). Unknown keys are
rejected so a typo in a config file is an error, not a silent default.

`load_config(cls, path, overrides)` is that loading path for any pydantic model: the
trainer's `TrainConfig` (`trainer/config.py`) is loaded through it too, so both configs
share one override syntax, one validation and one error format.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from carve.core.roles import Role


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RayConfig(_Section):
    """Where stages run. `address=None`: in this process or an embedded local Ray, as `executor`
    says (pipeline/choose.py); an address joins a cluster (docs/CLUSTER.md: shipping Carve to the
    workers, token authentication, GPUs)."""

    address: str | None = None
    # the embedded Ray's own address: its processes talk over loopback, never the host's network address
    # (127.0.0.2: Ray takes 127.0.0.1 for "not given" and puts the host's address in its place); None: Ray's pick
    node_ip_address: str | None = "127.0.0.2"
    num_cpus: int | None = Field(default=None, ge=1)
    num_gpus: int | None = Field(default=None, ge=0)  # embedded Ray only; None = what Ray detects
    object_store_memory_mb: int | None = Field(default=512, ge=64)
    # where the ingest steps run (pipeline/choose.py): "auto" runs a small embedded run in this process
    # and starts Ray only when it pays for itself; "ray" always starts/joins Ray; "local" never does
    executor: Literal["auto", "ray", "local"] = "auto"
    # "auto": an embedded run of fewer episodes than this stays in-process (Ray's start-up is not repaid)
    local_below_episodes: int = Field(default=500, ge=0)
    # "auto": on fewer usable cores than this an embedded run stays in-process whatever its size
    local_below_cores: int = Field(default=4, ge=1)
    # workers per step on Ray; None: sized from the CPUs Ray offers (pipeline/choose.py `step_concurrency`)
    decode_concurrency: int | None = Field(default=None, ge=1)
    caption_concurrency: int = Field(default=1, ge=1)
    embed_concurrency: int | None = Field(default=None, ge=1)
    # the CPU share each embed actor reserves on Ray, and each worker of the light steps (the write
    # workers, one per eight decode workers; caption actors); the decode workers share the rest
    # (pipeline/choose.py `step_cpus`)
    embed_cpus: float = Field(default=0.25, gt=0, le=1)
    light_cpus: float = Field(default=0.1, gt=0, le=1)
    # episodes per Ray block and per events part file (fewer when that would leave decode workers idle:
    # pipeline/executor.py `plan_blocks`); a block's part is split at episode boundaries above part_target_mb
    part_episodes: int = Field(default=32, ge=1)
    # Ray Data's per-operator resource reservation (DataContext.op_resource_reservation_enabled, on in
    # Ray Data). Off (Carve's default): the decode tasks take the CPUs the actors' shares leave, up to
    # their concurrency, where on they ran one task of two on 2 CPUs (docs/CLUSTER.md)
    data_reservation: bool = False
    # how long the embedded Ray keeps a task worker that has nothing to do (its raylet's
    # `idle_worker_killing_time_threshold_ms`; Ray's own default is 1 s). The decode and write workers
    # outnumber the CPUs (Ray's soft limit of workers), so after a second's wait for a block Ray killed
    # them and started new ones, each importing Carve again (docs/CLUSTER.md; a cluster sets it at `ray start`)
    keep_idle_workers_s: float = Field(default=60.0, ge=0)
    part_target_mb: float = Field(default=128.0, gt=0)
    part_row_group_size: int = Field(default=256, ge=1)  # rows per row group of an events part file
    # GPUs each embed worker reserves when embed.device is cuda; 0.5 lets two workers share one GPU
    embed_num_gpus: float = Field(default=1.0, gt=0)
    progress: bool = True
    # cluster mode (address set)
    auth: Literal["auto", "token", "disabled"] = "auto"  # auto: token when a token is at hand
    ship_code: bool = True  # send the driver's carve package to the workers (runtime_env py_modules)
    # driver environment variables the workers get (those that are set): object-store settings
    forward_env: list[str] = Field(default_factory=lambda: [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
        "CARVE_S3_MAX_ATTEMPTS", "HF_ENDPOINT", "CARVE_HUB_BLOCK_KB",
    ])
    runtime_env: dict[str, Any] = Field(default_factory=dict)  # extra runtime_env entries (pip, env_vars, ...)
    # a local root or source on a multi-node cluster: allowed only when every node mounts it at the same path
    allow_shared_local_root: bool = False

    @field_validator("address")
    @classmethod
    def _not_ray_client(cls, v: str | None) -> str | None:
        if v and v.startswith("ray://"):
            raise ValueError(
                "a Ray Client address (ray://) cannot run Carve's pipeline (Ray Data does not execute through "
                "Ray Client); run carve on a machine in the cluster's network (the head node will do) with the "
                "head's GCS address, e.g. --ray-address head:6379")
        return v

    @field_validator("embed_num_gpus")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError("a share of one GPU (0 < x <= 1) or a whole number of GPUs")
        return v


class SourceConfig(_Section):
    """The raw episodes to ingest."""

    uri: str = ""
    format: Literal["auto", "lerobot", "folder", "hdf5", "rlds"] = "auto"
    dataset: str | None = None  # defaults to the source directory name
    camera: str | list[str] | None = None  # a subset of the cameras ("a,b" or a list); None = every camera
    video_backend: Literal["auto", "decord", "pyav"] = "auto"
    max_episodes: int | None = Field(default=None, ge=1)
    # the task text of episodes whose source names none (an ACT HDF5 file without a `task`
    # attribute and no tasks.json beside it); None: the captioner says "the object"
    task: str | None = None


class SegmentConfig(_Section):
    """Event-joint detection (see ingest/segment.py). Times are seconds, speeds m/s or rad/s,
    resolved from each episode's fps: one configuration serves every frame rate."""

    gripper_dim: int | None = None  # a state column to use as the (only) gripper; None = find by name
    gripper_name_pattern: str = "grip|finger|claw|jaw"  # gripper, grip_effort, finger_joint1 ...
    gripper_hysteresis: float = Field(default=0.3, ge=0.0, le=0.45)  # band, as a fraction of the travel
    gripper_min_travel: float = Field(default=0.0, ge=0.0)  # in the recording's gripper unit
    gripper_min_travel_sigma: float = Field(default=10.0, ge=0.0)  # travel must exceed this x sensor noise
    gripper_min_hold_s: float = Field(default=0.06, ge=0.0)  # debounce: a new state must hold this long
    smooth_s: float = Field(default=0.06, ge=0.0)  # Gaussian smoothing of motion (tremor, sensor noise)
    use_pauses: bool = True
    pause_speed_m_s: float = Field(default=0.02, gt=0.0)  # end-effector speed below this: still
    pause_speed_rad_s: float = Field(default=0.06, gt=0.0)  # joint speed below this: still
    pause_min_s: float = Field(default=0.15, gt=0.0)
    move_speed_m_s: float = Field(default=0.08, gt=0.0)  # above this the arm is clearly moving
    move_speed_rad_s: float = Field(default=0.25, gt=0.0)
    use_waypoints: bool = True  # AWE waypoints where motion turns or slows without stopping
    waypoint_error_m: float = Field(default=0.02, gt=0.0)
    waypoint_error_rad: float = Field(default=0.08, gt=0.0)
    turn_deg: float = Field(default=45.0, ge=0.0, le=180.0)
    dip_ratio: float = Field(default=0.5, gt=0.0, le=1.0)  # a velocity minimum below this x both peaks
    use_speed_steps: bool = True  # a change between two steady speed levels (constant-speed controllers)
    speed_step_ratio: float = Field(default=2.0, gt=1.0)  # the faster level is at least this x the slower
    speed_step_window_s: float = Field(default=0.2, gt=0.0)  # each level holds this long ...
    speed_step_steady: float = Field(default=0.25, gt=0.0)  # ... within this fraction of its median
    speed_step_transition_s: float = Field(default=0.2, gt=0.0)  # the change completes within this
    command_lead_s: float = Field(default=0.3, ge=0.0)  # the lag an arm may follow its position command with
    refractory_s: float = Field(default=0.1, ge=0.0)  # no two boundaries closer than this
    use_visual: bool = False
    visual_threshold: float = Field(default=0.22, ge=0.0)  # on the change score of ingest.visual descriptors
    min_len_s: float = Field(default=0.1, gt=0.0)  # phases as short as 0.15 s stay events
    max_len_s: float = Field(default=15.0, gt=0.0)
    # per-step observations for training at every decision point: the visual descriptor every
    # `obs_every_s` seconds (`obs_visual`, `obs_stride` event columns); 0 = off
    obs_every_s: float = Field(default=0.0, ge=0.0)
    keyframe_size: int = Field(default=96, ge=16)  # JPEG keyframes are resized to this (short side)
    keyframe_quality: int = Field(default=85, ge=10, le=100)


class CaptionConfig(_Section):
    """Which captioner describes events."""

    backend: Literal["kinematic", "openai", "vllm"] = "kinematic"
    model: str = ""
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=8, ge=1)
    # openai backend: each request carries the previous event's caption (an episode's events go in
    # order; concurrency comes from the episodes of a block); false: every event of a block at once
    condition_on_previous: bool = True
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)  # the openai client's own retries (Retry-After, jittered backoff)
    max_tokens: int = Field(default=64, ge=1)
    temperature: float = 0.0
    prompt_version: str = "v3"  # captioners/prompts/<version>.yaml; v3: v2 (open vocabulary, JSON schema reply)
    # plus the parsed instruction and the verb classes


class EmbedConfig(_Section):
    """Which embedders run and how the fused `emb` is built."""

    visual: Literal["open_clip", "descriptor", "none"] = "descriptor"
    text: Literal["minilm", "open_clip", "none"] = "minilm"
    open_clip_model: str = "ViT-B-32"
    open_clip_pretrained: str | None = None  # a pretrained tag or a local checkpoint path
    device: str = "cpu"
    batch_size: int = Field(default=32, ge=1)
    weights: dict[str, float] = Field(default_factory=lambda: {"visual": 1.0, "text": 1.0, "motion": 0.5})
    motion_dim: int = Field(default=32, ge=4)


class ClusterConfig(_Section):
    """faiss k-means / hierarchical k-means and near-duplicate marking."""

    k: int | None = Field(default=None, ge=1)  # None = size heuristic
    levels: list[int] = Field(default_factory=list)  # hierarchical k per level, top first; [] = auto
    niter: int = Field(default=25, ge=1)
    seed: int = 0
    dedup_threshold: float = Field(default=0.97, gt=0.0, le=1.0)
    # a near-duplicate must also repeat the raw signals: state+action trajectories resampled to 16
    # points differ by at most this fraction of their motion (clustering/dedup.py); None = embedding only
    dedup_signal_tol: float | None = Field(default=0.05, ge=0.0)
    recluster_drift_ratio: float = Field(default=1.5, gt=0.0)  # new/training mean centroid distance -> recluster
    # k-means trains on a seeded sample of this many events per leaf centroid (all events if fewer);
    # every event is then assigned in batches streamed from the event part files
    train_sample_per_centroid: int = Field(default=256, ge=1)
    batch_rows: int = Field(default=16384, ge=1)  # embeddings assigned per batch while streaming
    spill_dir: str | None = None  # local folder for the per-cluster embedding spill of dedup; None = temp dir


class ShardConfig(_Section):
    """Cluster-balanced shard writing."""

    policy: Literal["uniform", "temperature", "hierarchical"] = "uniform"
    temperature: float = Field(default=0.5, ge=0.0, le=1.0)
    max_repeat: int = Field(default=4, ge=1)
    total_events: int | None = Field(default=None, ge=1)  # None = number of unique events
    rows_per_shard: int = Field(default=2048, ge=1)
    row_group_size: int = Field(default=256, ge=1)
    compression: str = "zstd"
    include_duplicates: bool = False
    seed: int = 0
    # "weights": every eligible event once, balance as its `sampling_weight`; "resample": rows
    # downsampled/repeated to the policy's counts (the pre-weights behaviour)
    mode: Literal["weights", "resample"] = "weights"


class ServiceConfig(_Section):
    """`carve serve`."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: str | None = None  # or CARVE_TOKEN in the environment
    allowed_roots: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    rate_limit_per_min: int = Field(default=600, ge=1)
    max_concurrent_jobs: int = Field(default=1, ge=1)  # pipeline subprocesses at once; the rest queue
    stale_after_s: float = Field(default=30.0, gt=0)  # a running job with an older heartbeat is orphaned
    poll_interval_s: float = Field(default=1.0, gt=0)  # job runner: reap / heartbeat / start queued
    cancel_grace_s: float = Field(default=10.0, ge=0)  # SIGTERM, then SIGKILL after this long
    # config sections a job submission may override (never root, ray or service)
    overridable: list[str] = Field(default_factory=lambda: ["source", "segment", "caption", "embed", "cluster", "shard"])
    # users and roles (service/access.py): per-user keys live in the catalog (`carve keys`); the
    # shared `token` above is one more key, of role admin and user name "token"
    key_cache_s: float = Field(default=2.0, ge=0)  # a key checked in the catalog is trusted this long
    # identity from an auth proxy: this header names the user, accepted only from these addresses
    # (IPs or CIDR networks); from any other address a request carrying it is refused (401)
    trusted_proxy_header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9\-]{1,100}$")
    trusted_proxies: list[str] = Field(default_factory=list)
    # a proxy user's role (user -> role); a user not listed takes the role of their active key, else 403
    proxy_users: dict[str, Role] = Field(default_factory=dict)

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for a in v:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {a!r} is not an IP address or network (e.g. 127.0.0.1, "
                                 "10.0.0.0/8)") from None
        return v


class CatalogConfig(_Section):
    """Where the catalog database lives (storage/catalog.py), as a SQLAlchemy URL.

    None: `CARVE_CATALOG_URL` from the environment, else `<root>/catalog.sqlite` of a local root.
    An `s3://` root needs one: `postgresql+psycopg://user:password@host:5432/carve` (clusters,
    several servers) or a SQLite file on a local disk, `sqlite:////var/lib/carve/catalog.sqlite`.
    Prefer the environment variable for a URL with a password: a config file is easy to leak."""

    url: str | None = None


class CheckConfig(_Section):
    """Thresholds of `carve check` (carve/quality), in physical units and seconds; the motion
    thresholds (still, moving, gripper hysteresis) are the segmenter's (`segment.*`)."""

    in_run: bool = True  # `carve run` checks every episode it ingests and records the findings
    workers: int = Field(default=0, ge=0)  # `carve check`: episodes checked at once (threads); 0: one per core
    gap_periods: float = Field(default=1.5, gt=1.0)  # a timestamp step of this many frame periods: frames missing
    fps_tolerance: float = Field(default=0.02, gt=0.0)  # measured vs declared frame rate, relative
    video_sample_s: float = Field(default=0.25, gt=0.0)  # the video checks decode one frame per this interval
    black_max_std: float = Field(default=4.0, ge=0.0)  # a frame whose brightness varies less (std, 0-255 luma) is constant
    black_min_s: float = Field(default=0.5, ge=0.0)  # ... for at least this long: black_video
    frozen_max_diff: float = Field(default=0.1, ge=0.0)  # mean |difference| of two samples' luma (0-255): the same image
    frozen_min_s: float = Field(default=0.5, ge=0.0)  # ... for this long while the robot moves: frozen_video
    jump_speed_rad_s: float = Field(default=15.0, gt=0.0)  # a joint changing faster than this in one frame: impossible
    jump_speed_m_s: float = Field(default=3.0, gt=0.0)  # the same for an end-effector position
    idle_min_s: float = Field(default=1.0, gt=0.0)  # the robot still this long at the start or end: idle_head/tail
    chatter_transitions: int = Field(default=4, ge=2)  # this many gripper transitions ...
    chatter_window_s: float = Field(default=1.0, gt=0.0)  # ... within this long: gripper_chatter
    offset_rad: float = Field(default=0.05, gt=0.0)  # a constant commanded - measured joint offset above this
    offset_m: float = Field(default=0.01, gt=0.0)  # ... or end-effector offset above this: action_state_offset
    duplicate_distance: float = Field(default=0.005, gt=0.0)  # RMS state distance (in state std) of two episodes
    truncated_window_s: float = Field(default=0.2, gt=0.0)  # moving over the last this long ...
    truncated_peak_fraction: float = Field(default=0.5, gt=0.0, le=1.0)  # ... still at this x its peak speed
    missed_grasp_fraction: float = Field(default=0.05, ge=0.0, le=0.5)  # closes to within this of fully shut


class CarveConfig(_Section):
    """Everything one `carve` invocation needs."""

    root: str = "./carve-data"
    log_level: str | None = None  # None: CARVE_LOG_LEVEL from the environment, else WARNING; -v/-vv win
    ray: RayConfig = Field(default_factory=RayConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    shard: ShardConfig = Field(default_factory=ShardConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    check: CheckConfig = Field(default_factory=CheckConfig)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> CarveConfig:
        """Load YAML (if given) then apply `a.b.c=value` overrides; raise ConfigError with reasons."""
        return load_config(cls, path, overrides)

    def with_overrides(self, overrides: dict[str, Any]) -> CarveConfig:
        """A copy with a nested dict of overrides merged in (used by the HTTP service)."""
        data = self.model_dump()
        _deep_merge(data, overrides)
        return validate_config(CarveConfig, data)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


M = TypeVar("M", bound=BaseModel)


def load_config(
    cls: type[M],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    section: str | None = None,
    error: type[ConfigError] = ConfigError,
    what: str = "config",
) -> M:
    """Validate `cls` from a YAML file (if given) plus `dotted.key=value` overrides.

    With `section`, a file that holds a mapping under that key is read from there (one file can
    carry several configs) and a leading `section.` is dropped from override keys. Every problem
    (missing or malformed file, bad override, unknown key, wrong type) raises `error` with a
    message naming the key and the reason.
    """
    try:
        data = _read_yaml(path) if path is not None else {}
        if section is not None and isinstance(data.get(section), dict):
            data = data[section]
        prefix = f"{section}." if section is not None else None
        for item in overrides or []:
            if prefix is not None and item.lstrip().startswith(prefix):
                item = item.lstrip()[len(prefix) :]
            apply_override(data, item)
    except ConfigError as e:
        if isinstance(e, error):
            raise
        raise error(str(e)) from e
    return validate_config(cls, data, error=error, what=what)


def validate_config(
    cls: type[M], data: dict[str, Any], *, error: type[ConfigError] = ConfigError, what: str = "config"
) -> M:
    """`cls.model_validate(data)`, with a pydantic ValidationError turned into `error` (key: reason)."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise error(_format_validation(e, what)) from e


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping, got {type(loaded).__name__}")
    return loaded


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one `dotted.key=value` override to a nested dict in place."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
        node = nxt
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v


def _format_validation(e: ValidationError, what: str = "config") -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        err_ctx = err.get("ctx") or {}
        # a model-level check raises ValueError("key: reason"): show its text, not pydantic's prefix
        msg = str(err_ctx["error"]) if err["type"] == "value_error" and "error" in err_ctx else err["msg"]
        lines.append(f"{loc}: {msg}" if loc else msg)
    return f"invalid {what}: " + "; ".join(lines)
