"""RLDS / Open X-Embodiment reader: TFDS builds of TFRecord shards, read without TensorFlow.

A build is a directory holding `dataset_info.json`, `features.json` and the shards
`<name>-<split>.tfrecord-NNNNN-of-MMMMM` (local, or any URI `carve.storage.fs` opens: `s3://`,
`gs://`). The source may also be the dataset's folder above its version folders (`droid/` with
`1.0.0/`): the highest version is read. Each record is one serialized episode, a
`tf.train.Example` whose keys are the flattened features: `steps/observation/<key>` holds the
values of every step (a tensor's values concatenated, an image's encoded JPEG/PNG bytes per
step), `episode_metadata/<key>` one value.

* **Listing** walks the record headers of every shard (`tfrecord.scan_records`: no data is
  read) in the order of `dataset_info.json`'s splits and shards; an episode's index is its
  position in that order, its locator the shard, the record's position and byte range, and its
  fingerprint the shard's size and mtime with that range, so an unchanged build lists the same
  episodes and a re-run ingests nothing. A shard that ends early or whose header is corrupt still
  lists every record `shardLengths` promises; the ones that cannot be found carry the error and
  are quarantined when loaded.
* **Mapping** (`RLDSMapping`): `carve.ingest.sources.oxe` names the state, action, cameras, task
  and fps of the common OXE layouts; any other build is mapped generically (every numeric
  observation vector is state, `steps/action` is the action, every RGB image under
  `steps/observation` a camera). A feature that cannot be mapped (a step feature of a kind Carve
  does not read, a tensor of more than one dimension that is not an image, a build without a
  state or an action) is a `SourceError` naming the feature.
* **Loading** (`load_rlds_episode`) reads one record (`tfrecord.read_record`, both CRCs checked;
  a truncated or corrupt record is an `EpisodeError` naming the shard and the record), parses
  it, and keeps the encoded images: frames are decoded on demand (Pillow), only the ones asked
  for. Language instructions become the task text (the first non-empty step value).
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from carve.core.errors import EpisodeError, SourceError
from carve.ingest.sources import oxe
from carve.ingest.sources.base import Episode, EpisodeRef
from carve.ingest.sources.common import camera_list, check_signals, file_stamp, fingerprint, natural_key
from carve.ingest.sources.tfrecord import TFRecordError, parse_example, read_record, scan_records
from carve.storage.fs import is_local, join, resolve

STEPS = "steps/"
SCAN_THREADS = 16  # shards scanned at once on an object store
VERSION = re.compile(r"^\d+\.\d+\.\d+$")  # a TFDS version folder: 1.0.0
_NUMERIC = {"float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "uint16",
            "uint32", "uint64", "bool"}
_CLS = "pythonClassName"


@dataclass(frozen=True)
class FeatureSpec:
    """One leaf of `features.json`: its flattened key, kind (tensor | image | text | class_label |
    other), dtype, shape of one value (-1: unknown), whether it has a value per step, its class."""

    key: str
    kind: str
    dtype: str
    shape: tuple[int, ...]
    per_step: bool
    description: str = ""
    cls: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.shape) if self.shape else 1


def parse_features(doc: dict[str, Any]) -> dict[str, FeatureSpec]:
    """The leaves of a TFDS `features.json`, by flattened key (`steps/observation/image`)."""
    out: dict[str, FeatureSpec] = {}

    def walk(node: dict[str, Any], prefix: str, per_step: bool) -> None:
        cls = str(node.get(_CLS, ""))
        desc = str(node.get("description") or "")
        if "featuresDict" in node:
            for k, child in (node["featuresDict"].get("features") or {}).items():
                walk(child, f"{prefix}{k}/", per_step)
            return
        key = prefix.rstrip("/")
        if "sequence" in node:  # a Dataset (RLDS steps) or a Sequence
            if per_step:  # a sequence inside the steps: not one value per step
                out[key] = FeatureSpec(key, "other", "", (), True, desc, cls)
                return
            walk(node["sequence"].get("feature") or {}, prefix, True)
            return
        if "image" in node:
            im = node["image"]
            shape = tuple(int(d) for d in (im.get("shape") or {}).get("dimensions") or [])
            out[key] = FeatureSpec(key, "image", str(im.get("dtype") or "uint8"), shape, per_step, desc, cls)
        elif "tensor" in node:
            t = node["tensor"]
            shape = tuple(int(d) for d in (t.get("shape") or {}).get("dimensions") or [])
            enc = str(t.get("encoding") or "none")
            kind = "tensor" if enc in ("none", "") else "other"
            out[key] = FeatureSpec(key, kind, str(t.get("dtype") or ""), shape, per_step, desc, cls)
        elif "text" in node:
            out[key] = FeatureSpec(key, "text", "string", (), per_step, desc, cls)
        elif "classLabel" in node:
            out[key] = FeatureSpec(key, "tensor", "int64", (), per_step, desc, cls)
        else:
            out[key] = FeatureSpec(key, "other", "", (), per_step, desc, cls)

    walk(doc, "", False)
    return out


@dataclass
class RLDSMapping:
    """Where an episode's parts are in a build's records (keys are full flattened keys)."""

    dataset: str
    layout: str  # an `oxe.LAYOUTS` name, or "generic"
    state: list[tuple[str, int]]  # (key, columns)
    action: list[tuple[str, int]]
    state_names: list[str]
    action_names: list[str]
    cameras: dict[str, str]  # camera name -> image key
    language: list[str]  # text keys, in order of preference
    fps: float
    robot: str
    closed: list[str] = field(default_factory=list)  # state keys recorded as closedness, read as 1 - v
    skipped: list[str] = field(default_factory=list)  # features read by nobody (reward, embeddings, ...)

    @property
    def keys(self) -> set[str]:
        return {k for k, _ in self.state} | {k for k, _ in self.action} | set(self.cameras.values()) | set(self.language)


ID_KEYS = ("episode_metadata/episode_id", "episode_metadata/file_path", "episode_metadata/recording_folderpath")


def own_id(ex: dict[str, Any]) -> str | None:
    """The episode's own id in its build (the first of `ID_KEYS` it holds), None without one."""
    for k in ID_KEYS:
        v = ex.get(k)
        if v is None or len(v) == 0:
            continue
        first = v[0]
        text = first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first.item() if hasattr(first, "item") else first)
        if text.strip():
            return text.strip()
    return None


def _is_camera(spec: FeatureSpec) -> bool:
    return (spec.kind == "image" and spec.per_step and spec.dtype == "uint8"
            and (len(spec.shape) < 3 or spec.shape[-1] in (3, -1)) and not oxe.DEPTH.search(spec.key))


def _columns(spec: FeatureSpec, where: str, uri: str) -> int:
    if spec.kind != "tensor" or spec.dtype not in _NUMERIC:
        raise SourceError(f"dataset {uri}: cannot map {where} feature {spec.key} ({spec.cls or spec.kind}, dtype {spec.dtype or '?'}): "
                          "Carve reads numeric tensors, images and text")
    if len(spec.shape) > 1 or any(d < 0 for d in spec.shape):
        raise SourceError(f"dataset {uri}: cannot map {where} feature {spec.key}: a tensor of shape {list(spec.shape)} per step "
                          "(Carve maps scalars and fixed-length vectors)")
    return spec.size


def map_build(dataset: str, specs: dict[str, FeatureSpec], uri: str) -> RLDSMapping:
    """How the build's features become an episode. Raises `SourceError` naming any feature of the
    observation or the action that Carve cannot map, and when there is no state or no action."""
    steps = {k[len(STEPS):]: s for k, s in specs.items() if k.startswith(STEPS) and s.per_step}
    if not steps:
        raise SourceError(f"dataset {uri}: features.json has no `steps` dataset; not an RLDS build")
    for rel, s in sorted(steps.items()):  # every observation and action feature must be readable
        if rel.startswith(("observation/", "action/")) or rel == "action":
            if s.kind in ("image", "text"):
                continue
            if s.kind == "other":
                raise SourceError(f"dataset {uri}: cannot map feature {STEPS}{rel} ({s.cls or 'unknown kind'}): "
                                  "Carve reads numeric tensors, images and text")
            _columns(s, "a step", uri)
    layout = oxe.find_layout(dataset, set(steps))
    cameras = {rel.rsplit("/", 1)[-1]: STEPS + rel for rel, s in sorted(steps.items())
               if rel.startswith("observation/") and _is_camera(s)}
    if layout is not None:
        state = [(STEPS + k, _columns(steps[k], "state", uri)) for k, _ in layout.state]
        action = [(STEPS + k, _columns(steps[k], "action", uri)) for k, _ in layout.action]
        state_names = [n for _, names in layout.state for n in names]
        action_names = [n for _, names in layout.action for n in names]
        for (k, n), (_, names) in zip(state + action, layout.state + layout.action, strict=True):
            if n != len(names):
                raise SourceError(f"dataset {uri}: feature {k} has {n} columns but the {layout.name} layout names "
                                  f"{len(names)}")
        language = [STEPS + k for k in layout.language if k in steps and steps[k].kind == "text"]
    else:
        state, state_names = [], []
        for rel, s in sorted(steps.items()):
            if (rel.startswith("observation/") and s.kind == "tensor" and len(s.shape) <= 1
                    and not oxe.NOT_STATE.search(rel)):
                n = _columns(s, "state", uri)
                state.append((STEPS + rel, n))
                state_names += oxe.column_names(rel, n, s.description)
        if "action" in steps:
            acts = [("action", steps["action"])]
        else:
            acts = [(rel, s) for rel, s in sorted(steps.items())
                    if rel.startswith("action/") and s.kind == "tensor" and not oxe.NOT_ACTION.search(rel)]
        action, action_names = [], []
        for rel, s in acts:
            n = _columns(s, "action", uri)
            action.append((STEPS + rel, n))
            action_names += oxe.column_names(rel, n, s.description)
        language = [STEPS + k for k in oxe.LANGUAGE_KEYS if k in steps and steps[k].kind == "text"]
        language += sorted(STEPS + k for k, s in steps.items() if s.kind == "text" and STEPS + k not in language
                           and ("instruction" in k or "language" in k))
    if not state:
        raise SourceError(f"dataset {uri}: cannot map the state: no numeric vector under {STEPS}observation/ "
                          f"(features: {sorted(steps)})")
    if not action:
        raise SourceError(f"dataset {uri}: cannot map the action: no {STEPS}action tensor (features: {sorted(steps)})")
    state_names, action_names = oxe.unique_names(state_names), oxe.unique_names(action_names)
    used = {k for k, _ in state} | {k for k, _ in action} | set(cameras.values()) | set(language)
    return RLDSMapping(
        dataset=dataset, layout=layout.name if layout else "generic", state=state, action=action,
        state_names=state_names, action_names=action_names, cameras=cameras, language=language,
        fps=oxe.fps_of(dataset, layout), robot=layout.robot if layout else "unknown",
        closed=[STEPS + k for k in layout.closed] if layout else [],
        skipped=sorted(STEPS + k for k in steps if STEPS + k not in used),
    )


def _read_json(fs: pafs.FileSystem, path: str) -> Any:
    with fs.open_input_file(path) as f:
        return json.loads(f.read().decode())


def find_build(fs: pafs.FileSystem, root: str, uri: str) -> str:
    """The build directory under `root` relative to it ("" when `root` is the build itself): the one
    holding features.json, else the highest version folder that holds one."""
    if fs.get_file_info(join(root, "features.json")).type == pafs.FileType.File:
        return ""
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise SourceError(f"dataset {uri}: path does not exist" if info.type == pafs.FileType.NotFound
                          else f"dataset {uri}: not a TFDS build directory")
    versions = [i.base_name for i in fs.get_file_info(pafs.FileSelector(root, recursive=False))
                if i.type == pafs.FileType.Directory and VERSION.match(i.base_name)
                and fs.get_file_info(join(join(root, i.base_name), "features.json")).type == pafs.FileType.File]
    if not versions:
        raise SourceError(f"dataset {uri}: no features.json (an RLDS build is a TFDS directory with "
                          "dataset_info.json, features.json and the tfrecord shards)")
    return max(versions, key=natural_key)


def is_rlds(fs: pafs.FileSystem, path: str) -> bool:
    """Whether `path` is a TFDS build (or a dataset folder of version builds)."""
    try:
        find_build(fs, path, path)
    except SourceError:
        return False
    return True


@dataclass
class Build:
    """A TFDS build's metadata: name, splits [(split, [(shard file, expected records)])], mapping."""

    name: str
    splits: list[tuple[str, list[tuple[str, int | None]]]]
    mapping: RLDSMapping
    stamp: list[Any]  # features.json's stamp: a changed mapping re-ingests


def _shards(fs: pafs.FileSystem, build: str, info: dict[str, Any], uri: str) -> list[tuple[str, list[tuple[str, int | None]]]]:
    name = str(info.get("name") or "")
    fmt = str(info.get("fileFormat") or "tfrecord")
    if fmt not in ("tfrecord", "TFRECORD"):
        raise SourceError(f"dataset {uri}: file format {fmt!r}; Carve reads TFRecord builds")
    names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(build, recursive=False))
             if i.type == pafs.FileType.File]
    out = []
    for split in info.get("splits") or []:
        sname = str(split.get("name"))
        lengths = [int(n) for n in split.get("shardLengths") or []]
        template = str(split.get("filepathTemplate") or "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}")
        files: list[tuple[str, int | None]] = []
        if lengths:
            for i, n in enumerate(lengths):
                fname = (template.replace("{DATASET}", name).replace("{SPLIT}", sname).replace("{FILEFORMAT}", "tfrecord")
                         .replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{len(lengths):05d}")
                         .replace("{SHARD_INDEX}", f"{i:05d}").replace("{NUM_SHARDS}", f"{len(lengths):05d}"))
                files.append((fname, n))
        else:  # an older build without shard lengths: every shard of the split by name
            files = [(n, None) for n in sorted((n for n in names if n.startswith(f"{name}-{sname}.tfrecord")),
                                               key=natural_key)]
        out.append((sname, files))
    if not any(files for _, files in out):
        raise SourceError(f"dataset {uri}: dataset_info.json lists no shards")
    return out


@lru_cache(maxsize=32)
def _open_build(uri: str, features_stamp: tuple[Any, ...]) -> Build:
    fs, root = resolve(uri)
    rel = find_build(fs, root, uri)
    build = join(root, rel) if rel else root
    try:
        info = _read_json(fs, join(build, "dataset_info.json"))
        features = _read_json(fs, join(build, "features.json"))
    except FileNotFoundError as e:
        raise SourceError(f"dataset {uri}: missing {e.filename or 'dataset_info.json'} in the build") from None
    except (OSError, ValueError) as e:
        raise SourceError(f"dataset {uri}: unreadable build metadata ({e})") from None
    name = str(info.get("name") or root.rstrip("/").rsplit("/", 1)[-1])
    specs = parse_features(features)
    mapping = map_build(name, specs, uri)
    splits = [(s, [(join(rel, f) if rel else f, n) for f, n in files]) for s, files in _shards(fs, build, info, uri)]
    return Build(name=name, splits=splits, mapping=mapping, stamp=list(features_stamp))


def open_build(uri: str) -> Build:
    """The build at `uri` (cached while its features.json is unchanged)."""
    fs, root = resolve(uri)
    rel = find_build(fs, root, uri)
    stamp = file_stamp(fs, join(join(root, rel) if rel else root, "features.json"))
    return _open_build(uri, tuple(stamp))


class RLDSSource:
    """A TFDS build of RLDS episodes (Open X-Embodiment)."""

    format = "rlds"

    def __init__(self, uri: str, *, dataset: str | None = None, camera: str | list[str] | None = None):
        self.uri = uri
        self.fs, self.root = resolve(uri)
        self.build = open_build(uri)
        self.mapping = self.build.mapping
        unknown = [c for c in camera_list(camera) or [] if c not in self.mapping.cameras]
        if unknown:
            raise SourceError(f"dataset {uri}: no camera {unknown[0]!r}; cameras are {sorted(self.mapping.cameras)}")
        self.camera = camera
        self.dataset = dataset or self.build.name

    def list_episodes(self) -> list[EpisodeRef]:
        """One ref per record, in the order of the splits and shards; a record that cannot be found
        (a shard cut short, a corrupt header) is listed with its error."""
        refs: list[EpisodeRef] = []
        shards = [(split, shard, expected) for split, files in self.build.splits for shard, expected in files]
        # on an object store every header is one ranged read: the shards are scanned side by side
        workers = 1 if is_local(self.fs) else min(SCAN_THREADS, len(shards))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            scans = list(pool.map(lambda s: self._scan(s[1]), shards))
        for (split, shard, expected), (stamp, found, error) in zip(shards, scans, strict=True):
            n = max(len(found), expected or 0)
            for k in range(n):
                loc: dict[str, Any] = {"split": split, "shard": shard, "record": k}
                if k < len(found):
                    loc["offset"], loc["length"] = found[k]
                else:
                    loc["error"] = (error or f"{shard}: record {k} is missing") + (
                        f" (record {k} of the {expected} that dataset_info.json lists)" if expected else "")
                refs.append(EpisodeRef(
                    source_uri=self.uri, format=self.format, dataset=self.dataset, episode_index=len(refs),
                    locator=loc, fingerprint=fingerprint("rlds", loc, stamp, self.build.stamp),
                ))
        return refs

    def _scan(self, shard: str) -> tuple[list[Any], list[tuple[int, int]], str | None]:
        """(the shard's stamp, its records' (offset, length), the error that ended the scan)."""
        path = join(self.root, shard)
        stamp = file_stamp(self.fs, path)
        if stamp[1] is None:
            return stamp, [], f"{shard}: the shard file is missing"
        try:
            with self.fs.open_input_file(path) as f:
                found, error = scan_records(f, shard, int(stamp[1]))
        except OSError as e:
            return stamp, [], f"{shard}: cannot read the shard ({e})"
        return stamp, found, error


class _EncodedFrames:
    """Frames of one episode kept as their encoded bytes, decoded (Pillow) only when asked for."""

    def __init__(self, label: str, images: dict[str, list[bytes]]):
        self.label = label
        self.images = images

    def __call__(self, cam: str, indices: Sequence[int] | None) -> np.ndarray:
        from PIL import Image

        imgs = self.images[cam]
        n = len(imgs)
        idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise EpisodeError(self.label, f"frame index out of range 0..{n - 1}")
        out = []
        cache: dict[int, np.ndarray] = {}
        for i in idx.tolist():
            if i not in cache:
                try:
                    with Image.open(io.BytesIO(imgs[i])) as im:
                        cache[i] = np.asarray(im.convert("RGB"))
                except OSError as e:
                    raise EpisodeError(self.label, f"camera {cam}: step {i % n}: undecodable image ({e})") from None
            out.append(cache[i])
        if not out:
            return np.zeros((0, 0, 0, 3), np.uint8)
        return np.stack(out)


def load_rlds_episode(ref: EpisodeRef, *, camera: str | list[str] | None = None, strict: bool = True) -> Episode:
    """Read, check and map one RLDS episode (one TFRecord record)."""
    loc = ref.locator
    label = ref.label
    where = f"{loc.get('shard')} record {loc.get('record')}"
    if loc.get("error"):
        raise EpisodeError(label, str(loc["error"]))
    try:
        build = open_build(ref.source_uri)
    except SourceError as e:
        raise EpisodeError(label, str(e)) from None
    m = build.mapping
    fs, root = resolve(ref.source_uri)
    try:
        with fs.open_input_file(join(root, loc["shard"])) as f:
            data = read_record(f, int(loc["offset"]), int(loc["length"]), str(loc["shard"]), int(loc["record"]))
    except FileNotFoundError:
        raise EpisodeError(label, f"shard {loc['shard']} is missing") from None
    except TFRecordError as e:
        raise EpisodeError(label, str(e)) from None
    except OSError as e:
        raise EpisodeError(label, f"cannot read {where} ({e})") from None
    try:
        ex = parse_example(data, m.keys | set(ID_KEYS))
    except TFRecordError as e:
        raise EpisodeError(label, f"{where}: {e}") from None
    missing = sorted(k for k in m.keys if k not in ex)
    if missing:
        raise EpisodeError(label, f"{where} lacks the feature {missing[0]} that features.json declares")
    lengths: dict[str, int] = {}
    parts = []
    for k, n in m.state + m.action:
        v = np.asarray(ex[k], dtype=np.float32)
        if v.size % max(n, 1):
            raise EpisodeError(label, f"{where}: {k} holds {v.size} values, not a multiple of its {n} columns")
        lengths[k] = v.size // max(n, 1)
        if k in m.closed:
            v = 1.0 - v
        parts.append(v.reshape(-1, n))
    selected = camera_list(camera)
    for c in selected or []:
        if c not in m.cameras:
            raise EpisodeError(label, f"no camera {c!r}; the episode has {sorted(m.cameras)}")
    cams = list(m.cameras)  # every camera stays readable; `selected` is the caller's choice
    images = {c: list(ex[m.cameras[c]]) for c in cams}  # type: ignore[arg-type]
    t = lengths[m.state[0][0]]
    if len(set(lengths.values())) > 1:
        raise EpisodeError(label, f"{where}: features have different numbers of steps: {lengths}")
    if t == 0:
        raise EpisodeError(label, f"{where}: the episode has no steps")
    for c in selected or cams:
        imgs = images[c]
        if len(imgs) != t and strict:
            raise EpisodeError(label, f"{where}: camera {c} has {len(imgs)} images for {t} steps")
    ns = len(m.state)
    state = np.concatenate(parts[:ns], axis=1)
    action = np.concatenate(parts[ns:], axis=1)
    timestamps = np.arange(t, dtype=np.float64) / m.fps
    if strict:
        check_signals(label, state, action, timestamps)
    task = ""
    for k in m.language:
        texts = [b.decode("utf-8", "replace").strip() for b in ex.get(k) or []]  # type: ignore[union-attr]
        task = next((s for s in texts if s), "")
        if task:
            break
    return Episode(
        ref=ref, fps=m.fps, task=task, state=state, action=action, timestamps=timestamps,
        state_names=list(m.state_names), action_names=list(m.action_names), cameras=cams, robot=m.robot,
        _frame_fn=_EncodedFrames(label, images) if cams else None, source_id=own_id(ex),
    )
