"""The map's screen as one binary frame: a level-of-detail sample of the layout's points sized by
the screen (not by the dataset) plus the density underlay, in a little-endian typed-array layout
a browser reads with `DataView` / typed arrays and a test reads with numpy.

Owns three things:

* **the frame format** (`encode_frame`, `MAGIC`, `FORMAT_VERSION`): all integers and floats
  little-endian.

      bytes 0-3    b"CMAP"
      bytes 4-7    uint32 format version (1)
      bytes 8-11   uint32 H, the length of the JSON header
      bytes 12-    H bytes of UTF-8 JSON, then zero bytes up to a multiple of 8
      then         the sections, each starting at a multiple of 8 from the start of the body

  The header names each section: `{"name", "dtype", "shape", "offset", "nbytes"}` with `dtype`
  a numpy type string (`<f4` float32, `<u2` uint16, `<u4` uint32, `<i4` int32, `|u1` uint8)
  and `offset` counted from byte 0. The sections of a frame (`n` points):

      x, y            <f4[n]        the points' 2-D layout coordinates
      cluster         <u2 or <i4[n] cluster id (uint16 when every id is in 0..65535)
      row             <u4[n]        the point's row in the dataset's layout (stable per version)
      task, robot, verb, caption    <u2 or <u4[n]: an index into header["dicts"][name]
                                    (a list of strings, null included when some are null)
      id_offsets      <u4[n+1]      event ids: id i is id_bytes[id_offsets[i]:id_offsets[i+1]]
      id_bytes        |u1[...]      the ids' UTF-8
      density         <u2 or <u4[bins, bins]  (only when asked): counts of the filtered rows
                                    over header["extent"], row iy (along y from ymin), column ix

  The other header fields: dataset, version, total (rows the filters keep), in_view (of them,
  inside the requested box), n (points sent), sampled (n < in_view), view (the box),
  extent (the dataset's), width / height / cell (the screen it was sampled for), bins.

* **the level-of-detail sample** (`sample_rows`): the rows inside the box; when more than the
  screen holds (one point per `cell` x `cell` pixel cell), one point per occupied cell, the one
  of lowest fixed priority (a seeded permutation of the dataset's rows), so zooming in only adds
  points and sparse regions keep theirs. At most `(width / cell) * (height / cell)` points,
  however large the dataset.

* **the density underlay of a clustering version** (`stored_density`): the unfiltered
  bins x bins histogram of a dataset over its extent, computed once per (clusters version,
  assignment parts, dataset, bins) and written next to the version's other files as
  `clusters/vNNN/map_density/<dataset>.b<bins>.<parts digest>.npy` (temp file + rename), read
  back by every later server process. A new version or new assignment parts name a new file.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carve.clustering.versions import version_dir
from carve.storage.root import Root

MAGIC = b"CMAP"
FORMAT_VERSION = 1
MEDIA_TYPE = "application/vnd.carve.map-frame"
DENSITY_DIR = "map_density"
DEFAULT_BINS = 128
DEFAULT_CELL = 8
STRING_COLUMNS = ("task", "robot", "verb", "caption")


def _align(n: int) -> int:
    return (n + 7) // 8 * 8


def encode_frame(header: dict[str, Any], sections: Sequence[tuple[str, np.ndarray]]) -> bytes:
    """The frame bytes of `header` (a JSON object; "sections" is filled in here) and the named arrays."""
    arrays = [(name, np.ascontiguousarray(a)) for name, a in sections]
    for _, a in arrays:
        if a.dtype.byteorder == ">":
            raise ValueError("frame sections are little-endian")
    # the header's own length moves the offsets: lay out with a guess, then fix the point
    meta: list[dict[str, Any]] = []
    guess = 0
    for _ in range(4):
        start = _align(12 + guess)
        meta, off = [], start
        for name, a in arrays:
            meta.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": off,
                         "nbytes": int(a.nbytes)})
            off = _align(off + a.nbytes)
        text = json.dumps({**header, "sections": meta}, separators=(",", ":")).encode()
        if _align(12 + len(text)) == start:
            break
        guess = len(text)
    else:  # pragma: no cover - converges in two rounds (offsets only grow by digits)
        raise RuntimeError("frame header did not settle")
    out = bytearray(off)
    out[0:12] = MAGIC + struct.pack("<II", FORMAT_VERSION, len(text))
    out[12:12 + len(text)] = text
    for m, (_, a) in zip(meta, arrays, strict=True):
        out[m["offset"]:m["offset"] + m["nbytes"]] = a.tobytes()
    return bytes(out)


def decode_header(buf: bytes) -> dict[str, Any]:
    """The JSON header of a frame (ValueError if `buf` is not one)."""
    if buf[:4] != MAGIC:
        raise ValueError("not a map frame")
    version, n = struct.unpack("<II", buf[4:12])
    if version != FORMAT_VERSION:
        raise ValueError(f"map frame format {version}; this reader knows {FORMAT_VERSION}")
    return json.loads(buf[12:12 + n])


# -- the sample ------------------------------------------------------------------------------------
def priorities(n: int, seed: int) -> np.ndarray:
    """A fixed rank per row of a dataset's layout (lower: shown first)."""
    return np.random.default_rng(seed).permutation(n).astype(np.int64)


def sample_rows(x: np.ndarray, y: np.ndarray, prio: np.ndarray, view: Sequence[float], width: int, height: int,
                cell: int) -> tuple[np.ndarray, int]:
    """(indices into x/y of the points to send, how many lie inside `view`).

    All the points inside `view` = [x0, x1, y0, y1] when they are at most one per `cell`-pixel
    cell of a width x height screen; else, per occupied cell, the point of lowest `prio`."""
    x0, x1, y0, y1 = (float(v) for v in view)
    inside = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    nx, ny = max(1, width // cell), max(1, height // cell)
    if inside.size <= nx * ny:
        return inside[np.argsort(prio[inside], kind="stable")], int(inside.size)
    ix = np.clip(((x[inside] - x0) / max(x1 - x0, 1e-12) * nx).astype(np.int64), 0, nx - 1)
    iy = np.clip(((y[inside] - y0) / max(y1 - y0, 1e-12) * ny).astype(np.int64), 0, ny - 1)
    cellid = ix * ny + iy
    o = np.lexsort((prio[inside], cellid))
    first = o[np.r_[True, cellid[o][1:] != cellid[o][:-1]]]
    keep = inside[first]
    return keep[np.argsort(prio[keep], kind="stable")], int(inside.size)


# -- the density underlay --------------------------------------------------------------------------
def density(x: np.ndarray, y: np.ndarray, extent: Sequence[float], bins: int) -> np.ndarray:
    """Counts of the points in a bins x bins grid over `extent` = [x0, x1, y0, y1]: [iy, ix], uint32."""
    x0, x1, y0, y1 = (float(v) for v in extent)
    if x.size == 0:
        return np.zeros((bins, bins), dtype=np.uint32)
    ix = np.clip(((x.astype(np.float64) - x0) / max(x1 - x0, 1e-12) * bins).astype(np.int64), 0, bins - 1)
    iy = np.clip(((y.astype(np.float64) - y0) / max(y1 - y0, 1e-12) * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(iy * bins + ix, minlength=bins * bins).astype(np.uint32).reshape(bins, bins)


def density_path(root: Root, version: int, parts: Sequence[str], dataset: str, bins: int) -> str:
    """Where the density of (version, its assignment parts, dataset, bins) is stored."""
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
    return f"{version_dir(root, 'clusters', version)}/{DENSITY_DIR}/{dataset}.b{bins}.{digest}.npy"


def stored_density(root: Root, version: int, parts: Sequence[str], dataset: str, bins: int,
                   compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The stored density grid, computed by `compute()` and written (temp + rename) when missing."""
    path = density_path(root, version, parts, dataset, bins)
    if root.exists(root.relative(path)):
        try:
            return np.load(io.BytesIO(root.read_bytes(path)), allow_pickle=False)
        except (ValueError, OSError):
            pass  # unreadable (a foreign file): computed and written again
    grid = np.ascontiguousarray(compute(), dtype=np.uint32)
    buf = io.BytesIO()
    np.save(buf, grid, allow_pickle=False)
    root.write_bytes(path, buf.getvalue())
    return grid


# -- the frame -------------------------------------------------------------------------------------
def _small_uint(a: np.ndarray) -> np.ndarray:
    top = int(a.max()) if a.size else 0
    return a.astype("<u2" if top < 65536 else "<u4")


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str | None]]:
    """(dictionary codes, the dictionary) of a string column; a null gets the code of a None entry."""
    d = col.combine_chunks().dictionary_encode()
    values: list[str | None] = d.dictionary.to_pylist()
    idx = d.indices
    if d.null_count:
        idx = pc.fill_null(idx, len(values))
        values.append(None)
    return _small_uint(idx.to_numpy(zero_copy_only=False).astype(np.int64)), values


def build_frame(t: pa.Table, rows: np.ndarray, header: dict[str, Any], grid: np.ndarray | None) -> bytes:
    """The frame of layout rows `rows` of `t` (a dataset's layout, maybe filtered), `grid` appended."""
    s = t.take(pa.array(rows, pa.int64()))
    cluster = s.column("cluster").to_numpy(zero_copy_only=False).astype(np.int64)
    fits = cluster.size == 0 or (int(cluster.min()) >= 0 and int(cluster.max()) < 65536)
    sections: list[tuple[str, np.ndarray]] = [
        ("x", s.column("x").to_numpy(zero_copy_only=False).astype("<f4")),
        ("y", s.column("y").to_numpy(zero_copy_only=False).astype("<f4")),
        ("cluster", cluster.astype("<u2" if fits else "<i4")),
        ("row", s.column("_row").to_numpy(zero_copy_only=False).astype("<u4")),
    ]
    dicts: dict[str, list[str | None]] = {}
    for name in STRING_COLUMNS:
        codes, values = _codes(s.column(name))
        sections.append((name, codes))
        dicts[name] = values
    ids = s.column("event_id").combine_chunks().cast(pa.large_string())
    offsets = np.frombuffer(ids.buffers()[1], dtype="<i8")[ids.offset:ids.offset + len(ids) + 1]
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8) if len(ids) else np.zeros(0, np.uint8)
    lo = int(offsets[0]) if offsets.size else 0
    hi = int(offsets[-1]) if offsets.size else 0
    sections += [("id_offsets", (offsets - lo).astype("<u4")), ("id_bytes", data[lo:hi].copy())]
    if grid is not None:
        sections.append(("density", _small_uint(grid)))
    return encode_frame({**header, "n": len(rows), "dicts": dicts}, sections)
