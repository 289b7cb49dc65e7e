"""`carve train` and `carve eval-model`.

    carve train --config train.yaml [--manifest ROOT/shards/v003] [--mode unified] [--set model.d_model=64]
    carve eval-model --checkpoint OUT/ckpt-00001000.pt [--manifest ...] [--json out.json]
    carve eval-model --compare --config train.yaml --manifest ... --steps 300 --out-dir OUT

`--config` here is the trainer's YAML (`trainer/config.py`; top level or a `train:` section)
and `--set` overrides trainer keys (`--set data.batch_size=64`). Without `--manifest`, the
newest `shards/vNNN` under `--root` is used. For multi-GPU runs use
`torchrun --nproc_per_node N -m carve.trainer.train` with the same options.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from carve.cli.main import add_common
from carve.core.log import setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    from carve.trainer.config import add_train_args  # torch-free: `carve <anything>` must not import torch

    p = subparsers.add_parser("train", help="train the world-action model on a shard manifest")
    add_common(p)
    add_train_args(p)
    p.set_defaults(func=cmd_train)

    e = subparsers.add_parser("eval-model", help="evaluate trained models on held-out episodes")
    add_common(e)
    add_train_args(e)
    e.add_argument("--checkpoint", action="append", default=[], help="checkpoint to score (repeatable)")
    e.add_argument(
        "--compare", action="store_true", help="train event, unified and chunk modes with the same budget"
    )
    e.add_argument("--json", default=None, help="also write the results as JSON here")
    e.set_defaults(func=cmd_eval)


def _logging(args: argparse.Namespace) -> None:
    v = getattr(args, "verbose", 0) or 0
    setup_logging("DEBUG" if v >= 2 else "INFO" if v == 1 else None)


def cmd_train(args: argparse.Namespace) -> int:
    from carve.trainer.train import config_from_args, summary_json, train

    _logging(args)
    cfg = config_from_args(args)
    res = train(cfg)
    print(summary_json(res))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from carve.trainer.eval import compare, evaluate_checkpoint, markdown_table
    from carve.trainer.train import config_from_args

    _logging(args)
    if args.compare:
        cfg = config_from_args(args)
        results, table = compare(cfg)
    elif args.checkpoint:
        results = [evaluate_checkpoint(c, args.manifest) for c in args.checkpoint]
        table = markdown_table(results)
    else:
        print("carve eval-model: give --checkpoint PATH (repeatable) or --compare")
        return 2
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0
