"""Every environment variable Carve reads or sets, in one place.

The rest of the house asks this module, never `os.environ`, so that the full list is here:

| variable | read by | meaning |
|---|---|---|
| `CARVE_LOG_LEVEL` | `core.log` | log level when neither `-v` nor the config's `log_level` sets one |
| `CARVE_CATALOG_URL` | `storage.catalog` | the catalog (SQLite path or PostgreSQL URL) when the config names none |
| `CARVE_TOKEN` | `service.auth` | the service's shared token (one `admin` key, user `token`) when the config names none; never passed to jobs |
| `CARVE_S3_MAX_ATTEMPTS` | `storage.fs` | retries of an S3 request (int) |
| `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` | `storage.fs` | the object store's endpoint (the first one set) |
| `AWS_REGION`, `AWS_DEFAULT_REGION` | `storage.fs` | its region (the first one set; us-east-1) |
| `HF_ENDPOINT` | `storage.hub` | the Hugging Face Hub's address (a mirror; the tests' loopback server) |
| `CARVE_HUB_BLOCK_KB` | `storage.hub` | block size of `hf://` range reads, KiB (int, default 1024) |
| `CARVE_HUB_CACHE` | `storage.hub` | folder of the `hf://` block cache (default `<HF_HOME>/carve/blocks`) |
| `RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH`, `RAY_AUTH_MODE` | `pipeline.ray_env` | Ray's token authentication |
| `WORLD_SIZE`, `RANK`, `LOCAL_RANK` | `trainer.train` | the torchrun process group |
| the name in `caption.api_key_env` | `captioners.openai_http` | the OpenAI-compatible server's key |
| the names in `ray.forward_env` | `pipeline.ray_env` | forwarded to the cluster's workers |

`HF_TOKEN`, `HF_HOME`, `HF_HUB_CACHE` and `HF_HUB_OFFLINE` are read by huggingface_hub itself, not
by Carve (the token is never read, logged or stored by Carve).

Carve sets only these, as defaults for libraries it starts: `RAY_DEDUP_LOGS`,
`RAY_ENABLE_UV_RUN_RUNTIME_ENV` and `RAY_AUTH_MODE` (Ray), `SVT_LOG` (the SVT-AV1 encoder).
Subprocesses (service jobs, exports) get `child_env`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

LOG_LEVEL = "CARVE_LOG_LEVEL"
CATALOG_URL = "CARVE_CATALOG_URL"
TOKEN = "CARVE_TOKEN"
S3_MAX_ATTEMPTS = "CARVE_S3_MAX_ATTEMPTS"
S3_ENDPOINT = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
S3_REGION = ("AWS_REGION", "AWS_DEFAULT_REGION")
HF_ENDPOINT = "HF_ENDPOINT"
HUB_BLOCK_KB = "CARVE_HUB_BLOCK_KB"
HUB_CACHE = "CARVE_HUB_CACHE"
RAY_AUTH_TOKEN = "RAY_AUTH_TOKEN"
RAY_AUTH_TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
RAY_AUTH_MODE = "RAY_AUTH_MODE"
SECRETS = (TOKEN,)  # never inherited by a subprocess Carve starts


def get(name: str) -> str | None:
    """The variable's value, None when unset or empty (whitespace stripped)."""
    value = os.environ.get(name, "").strip()
    return value or None


def first(names: Iterable[str]) -> str | None:
    """The value of the first of `names` that is set."""
    return next((v for v in (get(n) for n in names) if v is not None), None)


def log_level() -> str | None:
    return get(LOG_LEVEL)


def catalog_url() -> str | None:
    return get(CATALOG_URL)


def token() -> str | None:
    return get(TOKEN)


def s3_max_attempts() -> str | None:
    return get(S3_MAX_ATTEMPTS)


def s3_endpoint() -> str | None:
    return first(S3_ENDPOINT)


def s3_region() -> str:
    return first(S3_REGION) or "us-east-1"


def hf_endpoint() -> str | None:
    return get(HF_ENDPOINT)


def hub_block_kb() -> str | None:
    return get(HUB_BLOCK_KB)


def hub_cache() -> str | None:
    return get(HUB_CACHE)


def dist_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) of a torchrun process group; (0, 1, 0) outside one."""
    return int(get("RANK") or 0), int(get("WORLD_SIZE") or 1), int(get("LOCAL_RANK") or 0)


def values(names: Iterable[str]) -> dict[str, str]:
    """name -> value of those of `names` that are set."""
    return {n: v for n in names if (v := os.environ.get(n))}


def set_default(name: str, value: str) -> None:
    """Set `name` for this process and its children unless it is already set."""
    os.environ.setdefault(name, value)


def set_value(name: str, value: str) -> None:
    """Set `name` for this process and its children (a decision Carve made, e.g. Ray's auth mode)."""
    os.environ[name] = value


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a subprocess Carve starts: this one's, less `SECRETS`, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(extra or {})
    return env
