"""`carve ui-export`: the analysts' pages (`/ui/` of `carve serve`) as a static folder.

The API responses the pages read are taken from the service app in-process (no server, no
token needed on the command line) and written beside the pages by `carve.report.ui_export`.
"""

from __future__ import annotations

import argparse
import json
import secrets


def cmd_ui_export(args: argparse.Namespace) -> int:
    from fastapi.testclient import TestClient

    from carve.cli.main import load_config
    from carve.report.ui_export import export_ui
    from carve.service.app import create_app

    cfg = load_config(args)
    token = cfg.service.token or secrets.token_hex(16)  # the in-process app needs one; it never leaves this process
    cfg.service.token = token
    cfg.service.rate_limit_per_min = 10**9  # one local client
    app = create_app(cfg, start_runner=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        headers = {"Authorization": f"Bearer {token}"}

        def get(path: str) -> tuple[int, bytes]:
            r = client.get(path, headers=headers)
            return r.status_code, r.content

        summary = export_ui(get, args.out, datasets=args.dataset or None, max_events=args.max_events,
                            clips=not args.no_clips)
    print(json.dumps({k: v for k, v in summary.items() if k != "missing"} | {"missing": len(summary["missing"])}))
    print(f"ui export: {args.out}/index.html (open from file:// or any static server; flagging needs `carve serve`)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from carve.cli.main import add_common

    p = sub.add_parser("ui-export", help="the analysts' pages (map, events, clusters, coverage) as a static folder")
    add_common(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dataset", action="append", default=[], help="only this dataset (repeatable; default all)")
    p.add_argument("--max-events", type=int, default=200, help="events with an event view and clip (default 200)")
    p.add_argument("--no-clips", action="store_true", help="leave the clips out (smaller; thumbnails only)")
    p.set_defaults(func=cmd_ui_export)
