"""Export jobs: a shards version as a LeRobot v3.0 dataset, run as `carve export` (token required).

    POST /exports        {shards, out, unit, task_from, codec, reencode, overwrite, dataset}
                         -> 202 {id, state, out}; the output folder's parent must lie under
                         an allowed root (service.allowed_roots), 403 otherwise
    GET  /exports/{id}   state (running | succeeded | failed), the export summary or the error

Each export is a subprocess, `python -m carve.cli.main export --root R ... --json`, as `carve
run` jobs are (a crashed export never takes the server down); its files live under
`<root>/exports/<id>/`: `request.json`, `summary.json` (its stdout: the summary), `log.txt`
(its stderr) and `rc` (its exit status, written when this server sees it end). An export
whose server stopped before it ended reads as failed with that reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from carve.service.auth import require_token
from carve.service.deps import ID_PATTERN, CfgDep
from carve.service.limits import SourceRejected, confine_source

router = APIRouter(prefix="/exports", tags=["exports"], dependencies=[Depends(require_token)])
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class ExportRequest(BaseModel):
    """An export submission (the options of `carve export`)."""

    model_config = ConfigDict(extra="forbid")
    out: str = Field(min_length=1, max_length=4096, description="absolute output folder; its parent under an allowed root")
    shards: int | None = Field(default=None, ge=1, description="shards version (default: the latest)")
    unit: Literal["episode", "event"] = "episode"
    task_from: Literal["task", "caption"] | None = None
    codec: Literal["av1", "h264"] = "av1"
    reencode: bool = False
    overwrite: bool = False
    dataset: str | None = Field(default=None, max_length=200)


class ExportView(BaseModel):
    id: str
    state: str
    out: str
    summary: dict[str, Any] | None = None
    error: str | None = None


class _Procs:
    """The export subprocesses this server started (kept on app.state)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}


_LOCK = threading.Lock()


def _procs(request: Request) -> _Procs:
    with _LOCK:
        if not hasattr(request.app.state, "exports"):
            request.app.state.exports = _Procs()
    return request.app.state.exports


def _export_dir(root: str, export_id: str) -> Path:
    return Path(root) / "exports" / export_id


def _confine_out(out: str, allowed: list[str]) -> str:
    p = Path(out)
    if not p.is_absolute() or ".." in p.parts or not p.name or not set(p.name) <= _NAME_CHARS:
        raise HTTPException(status_code=422, detail=[{"loc": ["body", "out"], "type": "value_error",
                                                      "msg": f"out {out!r} must be an absolute path without '..' "
                                                             "whose last part is a plain folder name"}])
    try:
        parent = confine_source(str(p.parent), allowed)
    except SourceRejected as e:
        raise HTTPException(status_code=e.status, detail=f"output folder: {e}") from e
    return str(Path(parent) / p.name)


@router.post("", status_code=202, response_model=ExportView,
             responses={403: {"description": "output folder outside the allowed roots"}})
def submit(req: ExportRequest, cfg: CfgDep, request: Request) -> Any:
    out = _confine_out(req.out, cfg.service.allowed_roots)
    export_id = uuid.uuid4().hex[:12]
    d = _export_dir(cfg.root, export_id)
    d.mkdir(parents=True)
    (d / "request.json").write_text(json.dumps({**req.model_dump(), "out": out}, indent=2))
    argv = [sys.executable, "-m", "carve.cli.main", "export", "--root", cfg.root, "--out", out,
            "--unit", req.unit, "--codec", req.codec, "--json"]
    if req.shards is not None:
        argv += ["--shards", str(req.shards)]
    if req.task_from:
        argv += ["--task-from", req.task_from]
    if req.dataset:
        argv += ["--dataset", req.dataset]
    argv += ["--reencode"] * req.reencode + ["--overwrite"] * req.overwrite
    env = {k: v for k, v in os.environ.items() if k != "CARVE_TOKEN"}
    procs = _procs(request)
    with open(d / "summary.json", "wb") as so, open(d / "log.txt", "wb") as se, procs.lock:
        procs.procs[export_id] = subprocess.Popen(argv, stdout=so, stderr=se, stdin=subprocess.DEVNULL, env=env,
                                                  start_new_session=True)
    return ExportView(id=export_id, state="running", out=out)


@router.get("/{export_id}", response_model=ExportView)
def get_export(cfg: CfgDep, request: Request, export_id: str = PathParam(pattern=ID_PATTERN)) -> Any:
    d = _export_dir(cfg.root, export_id)
    if not (d / "request.json").exists():
        raise HTTPException(status_code=404, detail=f"unknown export {export_id!r}")
    out = json.loads((d / "request.json").read_text())["out"]
    procs = _procs(request)
    with procs.lock:
        p = procs.procs.get(export_id)
        if p is not None and p.poll() is not None:
            (d / "rc").write_text(str(p.returncode))
            procs.procs.pop(export_id, None)
            p = None
    if p is not None:
        return ExportView(id=export_id, state="running", out=out)
    rc = (d / "rc").read_text().strip() if (d / "rc").exists() else None
    if rc == "0":
        return ExportView(id=export_id, state="succeeded", out=out, summary=json.loads((d / "summary.json").read_text()))
    if rc is None:
        return ExportView(id=export_id, state="failed", out=out, error="the server stopped before the export ended")
    lines = [ln for ln in (d / "log.txt").read_text(errors="replace").splitlines() if ln.strip()]
    return ExportView(id=export_id, state="failed", out=out,
                      error=(lines[-1] if lines else f"carve export exited with status {rc}")[-1000:])
