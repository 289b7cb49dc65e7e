"""The `carve` command line.

Each area has a module of subcommands here (`register(subparsers)` in `run`, `segments`,
`captions`, `clusters`, `train`, `serve`, `keys`); commands that live beside the house, such as
`carve synth` (carve.sim), come in through the `carve.commands` entry-point group. This
module adds the common options and dispatches. Every
subcommand takes `--config cfg.yaml`, repeated `--set section.key=value` overrides,
`--root` and `-v/--verbose`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from carve.core.config import CarveConfig, ConfigError
from carve.core.errors import CarveError
from carve.core.log import setup_logging

# modules of this package that define `register(subparsers)`
_REGISTRARS = (
    "carve.cli.run",
    "carve.cli.maintenance",
    "carve.cli.segments",
    "carve.cli.captions",
    "carve.cli.clusters",
    "carve.cli.train",
    "carve.cli.serve",
    "carve.cli.export",
    "carve.cli.ui",
    "carve.cli.check",
    "carve.cli.keys",
)
# subcommands that live beside the house (e.g. `carve synth` in carve.sim) are entry points
# of this group, so that nothing here imports them
ENTRY_POINT_GROUP = "carve.commands"


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every subcommand shares."""
    p.add_argument("--config", "-c", default=None, help="YAML config file")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set segment.min_len_s=0.3 (repeatable)",
    )
    p.add_argument("--root", default=None, help="output root (catalog, events, clusters, shards, reports)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v info logs, -vv debug")


def load_config(args: argparse.Namespace) -> CarveConfig:
    """The config for a parsed command line: YAML, then --set, then --root."""
    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "root", None):
        overrides.append(f"root={args.root}")
    cfg = CarveConfig.load(getattr(args, "config", None), overrides)
    v = getattr(args, "verbose", 0) or 0
    setup_logging("DEBUG" if v >= 2 else "INFO" if v == 1 else cfg.log_level)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carve", description="Event-grounded curation of robot-manipulation video.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _REGISTRARS:
        importlib.import_module(name).register(sub)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, CarveError) as e:
        print(f"carve: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("carve: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
