"""TFRecord files without TensorFlow: the record framing, its CRCs, and `tf.train.Example`.

A TFRecord file is a run of records, each framed as

    uint64 length (little endian) | uint32 masked CRC32C of the length bytes
    data[length]                  | uint32 masked CRC32C of the data

where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2**32). Both CRCs are verified; a
record that is cut short or whose CRC does not match raises `TFRecordError`, which names the file
and the record's position in it.

* `scan_records(f, name)` walks the headers only (seeking past the data) and returns each record's
  (offset, length): the index a source lists episodes from without reading them;
* `read_record(f, offset, length, name, position)` reads one record and checks it;
* `iter_records(f, name)` streams the records of a file one at a time (for benchmarks and tools);
* `parse_example(data)` parses a serialized `tf.train.Example` into {key: values} with numpy
  arrays for float and int64 lists and lists of bytes for bytes lists.

The Example message is declared here from its wire definition (tensorflow/core/example/
example.proto, feature.proto) in a private descriptor pool, so neither TensorFlow nor a
generated module is needed, and a process that also imports TensorFlow sees no clash.
CRC32C comes from `google-crc32c` (a C implementation); without it a table-driven Python
fallback is used (correct, slow).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, BinaryIO, Protocol

import numpy as np

from carve.core.errors import CarveError

_MASK_DELTA = 0xA282EAD8
HEADER = 12  # uint64 length + uint32 CRC of it
FOOTER = 4  # uint32 CRC of the data


class TFRecordError(CarveError):
    """A TFRecord file that is truncated or corrupt; the message names the file and the record."""


class _Readable(Protocol):
    def seek(self, offset: int, whence: int = 0) -> int: ...
    def read(self, n: int = -1) -> bytes: ...


@lru_cache(maxsize=1)
def _crc_impl() -> Any:
    try:
        import google_crc32c

        return google_crc32c.value
    except ImportError:  # pragma: no cover - google-crc32c is a dependency
        return _crc32c_py


@lru_cache(maxsize=1)
def _table() -> list[int]:
    poly, table = 0x82F63B78, []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


def _crc32c_py(data: bytes) -> int:
    t, c = _table(), 0xFFFFFFFF
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of `data`."""
    c = int(_crc_impl()(bytes(data))) & 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """`data` framed as one TFRecord (for tests and tools that write records)."""
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", masked_crc32c(head)) + data + struct.pack("<I", masked_crc32c(data))


def _header(buf: bytes, name: str, position: int, offset: int) -> int:
    if len(buf) < HEADER:
        raise TFRecordError(f"{name}: record {position} at byte {offset} is truncated "
                            f"({len(buf)} of its {HEADER} header bytes)")
    length, crc = struct.unpack("<QI", buf)
    if masked_crc32c(buf[:8]) != crc:
        raise TFRecordError(f"{name}: record {position} at byte {offset}: the CRC of its length does not match "
                            "(a corrupt or truncated file)")
    return int(length)


def scan_records(f: _Readable, name: str, size: int | None = None) -> tuple[list[tuple[int, int]], str | None]:
    """Every record's (offset, data length) from the headers alone, and the error that ended the
    scan early (a bad header, a record running past the end of the file), or None."""
    out: list[tuple[int, int]] = []
    offset = 0
    f.seek(0)
    while True:
        buf = f.read(HEADER)
        if not buf:
            return out, None
        try:
            length = _header(buf, name, len(out), offset)
        except TFRecordError as e:
            return out, str(e)
        end = offset + HEADER + length + FOOTER
        if size is not None and end > size:
            return out, (f"{name}: record {len(out)} at byte {offset} is truncated: it needs {HEADER + length + FOOTER} "
                         f"bytes but the file ends after {size - offset}")
        out.append((offset, length))
        offset = end
        f.seek(offset)


def check_record(buf: bytes, name: str, position: int, offset: int) -> bytes:
    """The data of one framed record `buf` (header, data, CRC), its CRCs verified."""
    length = _header(buf[:HEADER], name, position, offset)
    need = HEADER + length + FOOTER
    if len(buf) < need:
        raise TFRecordError(f"{name}: record {position} at byte {offset} is truncated "
                            f"({len(buf)} of its {need} bytes)")
    data = buf[HEADER : HEADER + length]
    (crc,) = struct.unpack("<I", buf[HEADER + length : need])
    if masked_crc32c(data) != crc:
        raise TFRecordError(f"{name}: record {position} at byte {offset}: data CRC mismatch (a corrupt or truncated file)")
    return data


def read_record(f: _Readable, offset: int, length: int, name: str, position: int) -> bytes:
    """Read and check the record at `offset` whose data is `length` bytes long."""
    f.seek(offset)
    buf = f.read(HEADER + length + FOOTER)
    data = check_record(buf, name, position, offset)
    if len(data) != length:
        raise TFRecordError(f"{name}: record {position} at byte {offset} holds {len(data)} bytes, "
                            f"not the {length} it was listed with (the file changed?)")
    return data


def iter_records(f: BinaryIO | _Readable, name: str) -> Iterator[bytes]:
    """Stream the checked records of a file, one at a time."""
    offset, position = 0, 0
    while True:
        head = f.read(HEADER)
        if not head:
            return
        length = _header(head, name, position, offset)
        rest = f.read(length + FOOTER)
        yield check_record(head + rest, name, position, offset)
        offset += HEADER + length + FOOTER
        position += 1


# -- tf.train.Example -------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _example_class() -> Any:
    """The `Example` message class, built from its descriptor in a private pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="carve_tf_example.proto", package="carve.tfexample", syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL

    def msg(name: str, fields: list[tuple[str, int, int, int, str | None, bool]]) -> descriptor_pb2.DescriptorProto:
        m = fdp.message_type.add(name=name)
        for fname, number, label, ftype, type_name, packed in fields:
            fd = m.field.add(name=fname, number=number, label=label, type=ftype)
            if type_name:
                fd.type_name = type_name
            if packed:
                fd.options.packed = True
        return m

    msg("BytesList", [("value", 1, rep, F.TYPE_BYTES, None, False)])
    msg("FloatList", [("value", 1, rep, F.TYPE_FLOAT, None, True)])
    msg("Int64List", [("value", 1, rep, F.TYPE_INT64, None, True)])
    feat = msg("Feature", [("bytes_list", 1, opt, F.TYPE_MESSAGE, ".carve.tfexample.BytesList", False),
                           ("float_list", 2, opt, F.TYPE_MESSAGE, ".carve.tfexample.FloatList", False),
                           ("int64_list", 3, opt, F.TYPE_MESSAGE, ".carve.tfexample.Int64List", False)])
    feat.oneof_decl.add(name="kind")
    for fd in feat.field:
        fd.oneof_index = 0
    feats = msg("Features", [("feature", 1, rep, F.TYPE_MESSAGE, ".carve.tfexample.Features.FeatureEntry", False)])
    entry = feats.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, label=opt, type=F.TYPE_STRING)
    entry.field.add(name="value", number=2, label=opt, type=F.TYPE_MESSAGE, type_name=".carve.tfexample.Feature")
    entry.options.map_entry = True
    msg("Example", [("features", 1, opt, F.TYPE_MESSAGE, ".carve.tfexample.Features", False)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("carve.tfexample.Example")
    get = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22; older: a factory
    return get(desc) if get else message_factory.MessageFactory(pool).GetPrototype(desc)


Values = np.ndarray | list[bytes]


def parse_example(data: bytes, keys: set[str] | None = None) -> dict[str, Values]:
    """A serialized `tf.train.Example` as {key: values}: float32 / int64 arrays, or a list of bytes.
    `keys` limits the result to those features (the rest are parsed but not converted)."""
    from google.protobuf.message import DecodeError

    ex = _example_class()()
    try:
        ex.ParseFromString(data)
    except DecodeError as e:
        raise TFRecordError(f"not a tf.train.Example ({e})") from None
    out: dict[str, Values] = {}
    for key, feat in ex.features.feature.items():
        if keys is not None and key not in keys:
            continue
        kind = feat.WhichOneof("kind")
        if kind == "float_list":
            out[key] = np.asarray(feat.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            out[key] = np.asarray(feat.int64_list.value, dtype=np.int64)
        elif kind == "bytes_list":
            out[key] = list(feat.bytes_list.value)
        else:
            out[key] = np.zeros(0, dtype=np.float32)
    return out
