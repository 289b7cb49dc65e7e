"""`carve serve` (the HTTP service) and `carve report` (the static coverage audit)."""

from __future__ import annotations

import argparse
import sys


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from carve.cli.main import load_config
    from carve.service.app import create_app
    from carve.service.auth import TokenError

    if args.host:
        args.overrides.append(f"service.host={args.host}")
    if args.port is not None:
        args.overrides.append(f"service.port={args.port}")
    cfg = load_config(args)
    if args.allow_root:
        cfg.service.allowed_roots = [*cfg.service.allowed_roots, *args.allow_root]
    try:
        app = create_app(cfg, ray_address=args.ray_address)
    except TokenError as e:
        print(f"carve: error: {e}", file=sys.stderr)
        return 2
    print(f"carve serve: http://{cfg.service.host}:{cfg.service.port} (root {cfg.root}, "
          f"allowed roots {cfg.service.allowed_roots or 'none'})", file=sys.stderr)
    # proxy_headers off: uvicorn would otherwise take the client address from X-Forwarded-For
    # (from 127.0.0.1 by default), and the trusted-proxy check must see the socket's peer
    uvicorn.run(app, host=cfg.service.host, port=cfg.service.port, log_level="warning", proxy_headers=False)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.report.render import write_report

    cfg = load_config(args)
    path = write_report(cfg.root, args.out, dataset=args.dataset)
    print(f"report: {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from carve.cli.main import add_common

    p = sub.add_parser("serve", help="HTTP API: submit jobs, browse datasets/clusters/events, coverage report")
    add_common(p)
    p.add_argument("--host", default=None, help="bind address (service.host)")
    p.add_argument("--port", type=int, default=None, help="port (service.port)")
    p.add_argument("--allow-root", action="append", default=[], metavar="DIR",
                   help="a directory job sources may come from (adds to service.allowed_roots; repeatable)")
    p.add_argument("--ray-address", default=None, help="jobs connect to this Ray cluster instead of embedded Ray")
    p.set_defaults(func=cmd_serve)

    r = sub.add_parser("report", help="write the coverage audit (HTML + PNG) for the catalog")
    add_common(r)
    r.add_argument("--out", default=None, help="output folder (default <root>/reports)")
    r.add_argument("--dataset", default=None, help="only this dataset (default: all)")
    r.set_defaults(func=cmd_report)
