"""Faults put into real files where they really happen (helpers for the bad-input tests)."""

from __future__ import annotations

from pathlib import Path


def break_codec_tag(path: Path) -> bytes:
    """Overwrite the codec tag of an mp4's video sample entry (the stsd entry: `av01`, `avc1`,
    `hvc1`...) with one no decoder knows; returns the old tag."""
    data = bytearray(path.read_bytes())
    stsd = data.index(b"stsd")
    tag = bytes(data[stsd + 16:stsd + 20])  # stsd: version/flags, entry count, entry size, then the tag
    assert tag.isalnum(), tag
    data[stsd + 16:stsd + 20] = b"zzzz"
    path.write_bytes(bytes(data))
    return tag
