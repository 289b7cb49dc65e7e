"""One section of BENCHMARKS.md, replaced in place between its begin/end markers.

Every quality and speed benchmark that writes BENCHMARKS.md goes through `write_section`: the
text between `begin` and `end` is replaced when both markers are present; otherwise the section
is added under `heading`, after the `after` marker when that is present, else at the end.
"""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(section: str, begin: str, end: str, heading: str, after: str | None = None,
                  path: Path = BENCHMARKS) -> None:
    """Put `section` (which starts with `begin` and ends with `end`) into `path`."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + section + rest.split(end, 1)[1]
    elif after and after in old:
        head, tail = old.split(after, 1)
        new = head + after + f"\n\n{heading}\n\n" + section + "\n" + tail.lstrip("\n")
    else:
        new = old.rstrip() + f"\n\n{heading}\n\n" + section + "\n"
    path.write_text(new)


def print_or_write(section: str, no_write: bool, begin: str, end: str, heading: str, after: str | None = None) -> None:
    """A benchmark's `--no-write`: print the section; otherwise write it (`write_section`) and say so."""
    if no_write:
        print(section)
    else:
        write_section(section, begin, end, heading, after=after)
        print(f"wrote the {heading!r} section of BENCHMARKS.md")
