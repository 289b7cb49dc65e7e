"""FastAPI dependencies of the service: what a route needs, taken from the app's state.

`create_app` puts the configuration (`app.state.cfg`), the read views (`.views`), the job
runner (`.runner`) and the root's one catalog handle (`.catalogs`) on the app; routes declare them
as parameters (`cfg: CfgDep`, `views: ViewsDep`, ...) instead of closing over them.

The catalog dependency is a `Catalogs` handle whose `get()` the route calls: it returns the
root's one `Catalog` (SQLite or PostgreSQL), opened on first use. A `Catalog` takes a pooled
connection per call, so requests running at once on different worker threads never share a
transaction, and a PostgreSQL catalog costs one small connection pool per server, not one per
thread.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, Request

from carve.core.config import CarveConfig
from carve.service.jobs import JobRunner
from carve.service.views import Views
from carve.storage.catalog import Catalog
from carve.storage.root import Root

NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,200}$"  # a dataset name in a path
NO_NUL = r"^[^\x00]*$"  # free text kept in the catalog: PostgreSQL's text cannot hold a NUL byte (a 422, not a 500)
ID_PATTERN = r"^[A-Za-z0-9_\-]{1,128}$"  # a job or event id in a path


class Catalogs:
    """The server's catalog (the root's, shared by every worker thread), opened on first use."""

    def __init__(self, root: Root):
        self.root = root
        self._lock = threading.Lock()

    def get(self) -> Catalog:
        with self._lock:  # the root opens its catalog once, whichever thread asks first
            return self.root.catalog


def get_cfg(request: Request) -> CarveConfig:
    return request.app.state.cfg


def get_views(request: Request) -> Views:
    return request.app.state.views


def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


def get_catalogs(request: Request) -> Catalogs:
    return request.app.state.catalogs


CfgDep = Annotated[CarveConfig, Depends(get_cfg)]
ViewsDep = Annotated[Views, Depends(get_views)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
CatalogsDep = Annotated[Catalogs, Depends(get_catalogs)]
