"""Users and roles of the service (issue 24), through a real uvicorn server on loopback.

* The matrix: every route of `carve.service.access.ROUTE_ROLES` x every role (a key per role,
  plus the shared token as admin), no key, a malformed key, a wrong key, a wrong secret for a
  real key id and a revoked key, against the status the table implies (2xx/3xx for a role the
  row allows, 403 below it, 401 without a valid credential). Rows, roles and expectations all
  come from the table (`access.may`); only the concrete request of each route is written here,
  and the test fails if a route has none. docs/API.md holds the same table (checked).
* The trusted-proxy header: honoured from 127.0.0.2 (a trusted proxy), refused (401) from
  127.0.0.1, on one server bound to 127.0.0.1.
* The audit trail: a run, an export, a flag, a cancel by a non-owner (403) and a key revocation
  appear with the right user; revocation takes effect at once (API) or within key_cache_s (CLI).
* Bad input: malformed keys are 401, an unknown role in config or a proxy header without
  trusted proxies stops start-up with a clear error, and no key material reaches the logs,
  the audit log or an error message.

Every test runs with the catalog in SQLite and in PostgreSQL (`catalog_url_module`).
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from carve.cli.main import main as carve_main
from carve.core.config import CarveConfig, ConfigError
from carve.core.roles import ROLES
from carve.service.access import ROUTE_ROLES, markdown_table, may
from carve.service.app import create_app
from carve.service.auth import TokenError
from carve.sim.service_fakes import LiveServer, fabricate_root
from carve.storage import access
from carve.storage import flags as fl

TOKEN = "test-token-0123456789abcdef"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "API.md"
_seq = itertools.count()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory, catalog_url_module):
    base = tmp_path_factory.mktemp("roles")
    fab = fabricate_root(base / "root", datasets=("sim",), videos=True)
    allowed = base / "allowed"
    allowed.mkdir()
    cfg = CarveConfig.model_validate({
        "root": str(fab.root),
        "service": {"token": TOKEN, "allowed_roots": [str(allowed)], "rate_limit_per_min": 1_000_000,
                    "key_cache_s": 0.2, "trusted_proxy_header": "X-Forwarded-User",
                    "trusted_proxies": ["127.0.0.2"], "proxy_users": {"carol": "analyst"}},
    })
    app = create_app(cfg, start_runner=False)
    cat = app.state.catalogs.get()
    keys = {role: access.add_key(cat, f"user-{role}", role)[0] for role in ROLES}
    revoked = access.add_key(cat, "gone", "admin")[0]
    access.revoke_key(cat, "gone")
    with LiveServer(app) as srv:
        yield {"url": srv.url, "fab": fab, "allowed": allowed, "app": app, "cat": cat, "keys": keys,
               "revoked": revoked, "cfg": cfg}


# -- the concrete request of each route (a fresh one per call: state-changing routes are repeated) --
Req = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


def _job(env: dict[str, Any], user: str, state: str | None = None, kind: str = "run") -> str:
    src = env["allowed"] / f"src{next(_seq)}"
    src.mkdir()
    params = {"out": str(src)} if kind == "export" else None
    job_id, _ = env["cat"].create_job_if_idle(str(src), "auto", kind=kind, params=params, submitted_by=user)
    if state is not None:
        env["cat"].update_job(job_id, state=state)
    return job_id


def _requests(env: dict[str, Any], user: str) -> dict[tuple[str, str], Callable[[], Req]]:
    """(method, route) -> a function making one concrete request of it, as `user` would send it."""
    eid = env["fab"].event_ids[0]

    def new_dir() -> str:
        d = env["allowed"] / f"ds{next(_seq)}"
        d.mkdir()
        return str(d)

    def flag() -> str:
        return fl.add_flag(env["cat"], eid, "wrong_caption", who="fixture", dataset="sim")["id"]

    def key_name() -> str:
        name = f"k{next(_seq)}"
        access.add_key(env["cat"], name, "viewer")
        return name

    get = {
        "/whoami": "/whoami", "/jobs": "/jobs", "/datasets": "/datasets", "/datasets/{name}": "/datasets/sim",
        "/datasets/{name}/clusters": "/datasets/sim/clusters", "/datasets/{name}/versions": "/datasets/sim/versions",
        "/report/{name}": "/report/sim", "/datasets/{name}/map": "/datasets/sim/map",
        "/datasets/{name}/map/bins": "/datasets/sim/map/bins", "/datasets/{name}/map/facets": "/datasets/sim/map/facets",
        "/datasets/{name}/map/frame": "/datasets/sim/map/frame",
        "/datasets/{name}/coverage": "/datasets/sim/coverage",
        "/datasets/{name}/coverage.csv": "/datasets/sim/coverage.csv", "/datasets/{name}/quality": "/datasets/sim/quality",
        "/datasets/{name}/quality.csv": "/datasets/sim/quality.csv",
        "/events/{event_id}/neighbours": f"/events/{eid}/neighbours", "/events/{event_id}": f"/events/{eid}",
        "/events/{event_id}/signals": f"/events/{eid}/signals", "/events/{event_id}/clip.mp4": f"/events/{eid}/clip.mp4",
        "/events/{event_id}/clip.webm": f"/events/{eid}/clip.webm",
        "/events/{event_id}/keyframe.jpg": f"/events/{eid}/keyframe.jpg",
        "/events/{event_id}/keyframes/{index}.jpg": f"/events/{eid}/keyframes/0.jpg",
        "/events/{event_id}/flags": f"/events/{eid}/flags", "/datasets/{name}/flags": "/datasets/sim/flags",
        "/ui": "/ui", "/ui/": "/ui/", "/ui/map": "/ui/map?dataset=sim", "/ui/event": f"/ui/event?id={eid}",
        "/ui/cluster": "/ui/cluster?dataset=sim&c=0", "/ui/coverage": "/ui/coverage?dataset=sim",
        "/ui/quality": "/ui/quality?dataset=sim", "/ui/static/{name}": "/ui/static/ui.js", "/keys": "/keys",
        "/audit-log": "/audit-log", "/audit-log.csv": "/audit-log.csv",
    }
    out: dict[tuple[str, str], Callable[[], Req]] = {("GET", r): (lambda p=p: ("GET", p, None)) for r, p in get.items()}
    out[("GET", "/datasets/{name}/clusters/{cluster}")] = lambda: ("GET", f"/datasets/sim/clusters/{env['fab'].tiny_cluster}", None)
    out[("GET", "/jobs/{job_id}")] = lambda: ("GET", f"/jobs/{_job(env, 'fixture')}", None)
    out[("GET", "/exports/{export_id}")] = lambda: ("GET", f"/exports/{_job(env, 'fixture', kind='export')}", None)
    out[("POST", "/jobs")] = lambda: ("POST", "/jobs", {"source": new_dir()})
    out[("POST", "/jobs/{job_id}/cancel")] = lambda: ("POST", f"/jobs/{_job(env, user)}/cancel", None)
    out[("POST", "/jobs/{job_id}/resume")] = lambda: ("POST", f"/jobs/{_job(env, user, 'resumable')}/resume", None)
    out[("POST", "/exports")] = lambda: ("POST", "/exports", {"out": str(env["allowed"] / f"out{next(_seq)}")})
    out[("POST", "/events/{event_id}/flags")] = lambda: ("POST", f"/events/{eid}/flags", {"kind": "wrong_boundary"})
    out[("DELETE", "/events/{event_id}/flags/{flag_id}")] = lambda: ("DELETE", f"/events/{eid}/flags/{flag()}", None)
    out[("POST", "/keys")] = lambda: ("POST", "/keys", {"name": f"new{next(_seq)}", "role": "viewer"})
    out[("DELETE", "/keys/{name}")] = lambda: ("DELETE", f"/keys/{key_name()}", None)
    return out


def _credentials(env: dict[str, Any]) -> dict[str, tuple[dict[str, str], str | None, str]]:
    """label -> (headers, the role it signs in as or None, the user whose jobs it owns)."""
    k = env["keys"]
    real_id = access.parse_key(k["viewer"])[0]
    creds: dict[str, tuple[dict[str, str], str | None, str]] = {
        role: (_bearer(k[role]), role, f"user-{role}") for role in ROLES}
    creds["token"] = (_bearer(TOKEN), "admin", "token")
    creds["no key"] = ({}, None, "-")
    creds["malformed key"] = (_bearer("not-a-carve-key"), None, "-")
    creds["wrong key"] = (_bearer(f"carve_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"), None, "-")
    creds["wrong secret"] = (_bearer(f"carve_{real_id}_{secrets.token_urlsafe(32)}"), None, "-")
    creds["revoked key"] = (_bearer(env["revoked"]), None, "-")
    return creds


def test_every_route_has_a_request_and_a_row():
    class Fab:
        event_ids = ["e0"]

    assert set(_requests({"fab": Fab(), "allowed": None, "cat": None}, "x")) == set(ROUTE_ROLES)


@pytest.mark.parametrize("route", sorted(ROUTE_ROLES, key=lambda r: (r[1], r[0])), ids=lambda r: f"{r[0]} {r[1]}")
def test_matrix_route_x_role(env, route):
    method, template = route
    got, want = {}, {}
    with httpx.Client(base_url=env["url"], timeout=120, follow_redirects=False) as c:
        for label, (headers, role, user) in _credentials(env).items():
            m, path, body = _requests(env, user)[route]()
            r = c.request(m, path, json=body, headers=headers)
            if role is None:
                want[label], got[label] = 401, r.status_code
            elif may(role, method, template):
                want[label], got[label] = "2xx/3xx", "2xx/3xx" if r.status_code < 400 else r.status_code
            else:
                want[label], got[label] = 403, r.status_code
            if r.status_code == 401:
                assert "WWW-Authenticate" in r.headers
    assert got == want


def test_docs_show_the_same_table():
    assert markdown_table() in DOCS.read_text(), "docs/API.md: regenerate the roles table from access.markdown_table()"


def test_role_table_is_monotone_and_keys_are_admin_only():
    for (method, path), need in ROUTE_ROLES.items():
        allowed = [may(r, method, path) for r in ROLES]
        assert allowed == sorted(allowed), (method, path)  # once allowed, every higher role is too
        if method != "GET":
            assert need != "viewer", (method, path)  # a viewer changes nothing
    assert {p for (m, p), need in ROUTE_ROLES.items() if need == "admin"} == {
        "/keys", "/keys/{name}", "/audit-log", "/audit-log.csv"}


# -- the trusted proxy ----------------------------------------------------------------------------
def _from(address: str, url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def test_proxy_header_honoured_from_a_trusted_address_refused_from_another(env):
    eid = env["fab"].event_ids[1]
    access.add_key(env["cat"], "dave", "engineer")  # a proxy user known to the catalog, not to the config
    with _from("127.0.0.2", env["url"]) as proxy, _from("127.0.0.1", env["url"]) as direct:
        r = proxy.get("/whoami", headers={"X-Forwarded-User": "carol"})
        assert r.status_code == 200, r.text
        assert r.json()["user"] == "carol" and r.json()["role"] == "analyst" and r.json()["via"] == "proxy"
        f = proxy.post(f"/events/{eid}/flags", json={"kind": "keep"}, headers={"X-Forwarded-User": "carol"})
        assert f.status_code == 201 and f.json()["who"] == "carol"
        assert proxy.post("/jobs", json={"source": "/x"}, headers={"X-Forwarded-User": "carol"}).status_code == 403
        assert proxy.get("/whoami", headers={"X-Forwarded-User": "dave"}).json()["role"] == "engineer"
        assert proxy.get("/whoami", headers={"X-Forwarded-User": "mallory"}).status_code == 403  # no role
        assert proxy.get("/whoami", headers={"X-Forwarded-User": "bad name!"}).status_code == 401
        # the same header from an address that is no proxy: refused, even beside a valid credential
        for headers in ({"X-Forwarded-User": "carol"}, {"X-Forwarded-User": "admin", **_bearer(TOKEN)}):
            r = direct.get("/whoami", headers=headers)
            assert r.status_code == 401, r.text
            assert "trusted proxy" in r.json()["detail"]
        assert direct.post(f"/events/{eid}/flags", json={"kind": "keep"},
                           headers={"X-Forwarded-User": "carol"}).status_code == 401
        # nor can a client pose as the proxy with X-Forwarded-For (the peer address is the socket's)
        spoof = {"X-Forwarded-User": "carol", "X-Forwarded-For": "127.0.0.2", "X-Real-IP": "127.0.0.2",
                 "Forwarded": "for=127.0.0.2"}
        assert direct.get("/whoami", headers=spoof).status_code == 401
        # without the header, a direct client signs in with its key as usual
        assert direct.get("/whoami", headers=_bearer(env["keys"]["viewer"])).json()["user"] == "user-viewer"
    rows = [r for r in _admin(env).get("/audit-log", params={"limit": 100_000}).json()
            if r["path"] == f"/events/{eid}/flags"]
    assert {(r["user"], r["via"], r["status"]) for r in rows} >= {("carol", "proxy", 201), (None, None, 401)}


# -- the audit trail ------------------------------------------------------------------------------
def _admin(env: dict[str, Any]) -> httpx.Client:
    return httpx.Client(base_url=env["url"], headers=_bearer(env["keys"]["admin"]), timeout=30)


def test_audit_trail_run_export_flag_foreign_cancel_and_revocation(env, caplog):
    caplog.set_level(logging.DEBUG)
    url, allowed = env["url"], env["allowed"]
    t0 = time.time()
    with _admin(env) as admin:
        bob = admin.post("/keys", json={"name": "bob", "role": "engineer"}).json()["key"]
        eve = admin.post("/keys", json={"name": "eve", "role": "engineer"}).json()["key"]
        alice = admin.post("/keys", json={"name": "alice", "role": "analyst"}).json()["key"]
        listed = admin.get("/keys").json()
        assert {k["name"] for k in listed} >= {"bob", "eve", "alice"}
        assert all("hash" not in k and "key" not in k for k in listed)
    src = allowed / "audit-src"
    src.mkdir()
    with httpx.Client(base_url=url, timeout=30) as c:
        run = c.post("/jobs", json={"source": str(src)}, headers=_bearer(bob))
        assert run.status_code == 202, run.text
        job_id = run.json()["id"]
        assert c.get(f"/jobs/{job_id}", headers=_bearer(bob)).json()["submitted_by"] == "bob"
        exp = c.post("/exports", json={"out": str(allowed / "audit-out")}, headers=_bearer(bob))
        assert exp.status_code == 202, exp.text
        eid = env["fab"].event_ids[2]
        # Basic auth: the key is the password, the user name is ignored (not "mallory": alice)
        flag = c.post(f"/events/{eid}/flags", json={"kind": "wrong_caption"}, auth=("mallory", alice))
        assert flag.status_code == 201 and flag.json()["who"] == "alice"
        r = c.post(f"/jobs/{job_id}/cancel", headers=_bearer(eve))  # eve did not start it
        assert r.status_code == 403 and "bob" in r.json()["detail"]
        assert c.get(f"/jobs/{job_id}", headers=_bearer(bob)).json()["state"] == "queued"
        with _admin(env) as admin:
            assert admin.delete("/keys/alice").status_code == 200
        r = c.post(f"/events/{eid}/flags", json={"kind": "keep"}, headers=_bearer(alice))  # at once: 401
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
        assert c.post(f"/jobs/{job_id}/cancel", headers=_bearer(bob)).status_code == 202  # the owner may
        exp_id = exp.json()["id"]
        assert c.post(f"/jobs/{exp_id}/cancel", headers=_bearer(env["keys"]["admin"])).status_code == 202  # admin
    with _admin(env) as admin:
        rows = [r for r in admin.get("/audit-log", params={"since": t0}).json()]
        csv_text = admin.get("/audit-log.csv", params={"since": t0}).text
    seen = {(r["user"], r["method"], r["route"], r["status"], r["outcome"], r["target"]) for r in rows}
    assert ("bob", "POST", "/jobs", 202, "ok", job_id) in seen
    assert ("bob", "POST", "/exports", 202, "ok", exp_id) in seen
    assert ("alice", "POST", "/events/{event_id}/flags", 201, "ok", f"{eid}/{flag.json()['id']}") in seen
    assert ("eve", "POST", "/jobs/{job_id}/cancel", 403, "refused", job_id) in seen
    assert ("user-admin", "DELETE", "/keys/{name}", 200, "ok", "alice") in seen
    assert (None, "POST", "/events/{event_id}/flags", 401, "unauthenticated", eid) in seen
    assert ("bob", "POST", "/jobs/{job_id}/cancel", 202, "ok", job_id) in seen
    assert ("user-admin", "POST", "/jobs/{job_id}/cancel", 202, "ok", exp_id) in seen
    assert all(r["role"] == {"bob": "engineer", "eve": "engineer", "alice": "analyst"}.get(r["user"], r["role"])
               for r in rows)
    assert csv_text.splitlines()[0].split(",") == list(access.AUDIT_FIELDS)
    assert len(csv_text.splitlines()) == len(rows) + 1 and ",eve,engineer,key,POST,/jobs/{job_id}/cancel," in csv_text
    with httpx.Client(base_url=url, timeout=30) as c:  # the audit log is for admins only
        assert c.get("/audit-log", headers=_bearer(bob)).status_code == 403
    # key material is nowhere: not in the logs, the audit log, or an error message
    secrets_ = [bob, eve, alice, TOKEN, *env["keys"].values(), env["revoked"]]
    secrets_ += [access.parse_key(k)[1] for k in secrets_ if access.parse_key(k)]
    blob = caplog.text + json.dumps(rows) + csv_text + r.text
    assert not [s for s in secrets_ if s in blob]


def test_key_revoked_with_the_cli_stops_working_without_a_restart(env, tmp_path, capsys):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(f"root: {env['fab'].root}\n")
    assert carve_main(["keys", "add", "--name", "frank", "--role", "analyst", "--config", str(cfg_file)]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert access.parse_key(key) and "shown once" in err
    with httpx.Client(base_url=env["url"], timeout=30) as c:
        assert c.get("/whoami", headers=_bearer(key)).json() == {
            "user": "frank", "role": "analyst", "via": "key",
            "may": {"flag": True, "run": False, "cancel": False, "export": False, "keys": False, "audit": False}}
        assert carve_main(["keys", "list", "--config", str(cfg_file)]) == 0
        listing = capsys.readouterr().out
        assert "frank" in listing and "analyst" in listing and key not in listing
        assert access.parse_key(key)[1] not in listing
        assert carve_main(["keys", "revoke", "--name", "frank", "--config", str(cfg_file)]) == 0
        time.sleep(env["cfg"].service.key_cache_s + 0.1)
        assert c.get("/whoami", headers=_bearer(key)).status_code == 401
    assert carve_main(["keys", "revoke", "--name", "frank", "--config", str(cfg_file)]) == 2  # no active key
    assert carve_main(["keys", "add", "--name", "bad name", "--role", "viewer", "--config", str(cfg_file)]) == 2
    with pytest.raises(SystemExit):
        carve_main(["keys", "add", "--name", "x", "--role", "boss", "--config", str(cfg_file)])
    capsys.readouterr()
    log = access.entries(env["cat"], limit=10)
    assert [(r["route"], r["target"], r["via"]) for r in log[:2]] == [
        ("carve keys revoke", "frank", "cli"), ("carve keys add", "frank", "cli")]


# -- bad input ------------------------------------------------------------------------------------
def test_malformed_credentials_are_401_never_500(env):
    with httpx.Client(base_url=env["url"], timeout=30) as c:
        for raw in [b"Bearer", b"Bearer carve_", b"Bearer carve_zzzzzzzzzzzz_" + b"a" * 43, b"Bearer " + b"x" * 5000,
                    b"Bearer caf\xe9-\xff\xfe", b"Basic !!!notbase64", b"Basic " + b"Og==", b"Digest abc",
                    b"Bearer " + TOKEN.encode() + b"x"]:
            r = c.get("/jobs", headers=[(b"Authorization", raw)])
            assert r.status_code == 401, (raw[:40], r.status_code, r.text)
            assert r.json()["detail"] in ("invalid key", "missing credentials: send a key as a Bearer token (or Basic "
                                                          "password)")


def test_unknown_role_or_unusable_proxy_setting_stops_start_up(tmp_path, capsys):
    with pytest.raises(ConfigError, match="proxy_users"):
        CarveConfig.load(None, ["service.proxy_users={bob: boss}"])
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(f"root: {tmp_path / 'root'}\nservice:\n  token: {TOKEN}\n  proxy_users: {{bob: boss}}\n")
    assert carve_main(["serve", "--config", str(cfg_file)]) == 2
    err = capsys.readouterr().err
    assert "proxy_users" in err and "viewer" in err and TOKEN not in err
    with pytest.raises(ConfigError, match="trusted_proxies"):
        CarveConfig.load(None, ["service.trusted_proxies=[proxy.example]"])
    cfg = CarveConfig.model_validate({"root": str(tmp_path / "r2"),
                                      "service": {"token": TOKEN, "trusted_proxy_header": "X-Forwarded-User"}})
    with pytest.raises(TokenError, match="trusted_proxies is empty"):
        create_app(cfg, start_runner=False)


def test_pages_show_the_user_and_role_and_carry_what_the_role_may_do(env):
    eid = env["fab"].event_ids[0]
    with httpx.Client(base_url=env["url"], timeout=30) as c:
        for role in ROLES:
            key = env["keys"][role]
            html = c.get(f"/ui/event?id={eid}", auth=("ignored", key)).text  # a browser's Basic auth
            cfg = json.loads(html.split('<script id="carve-config" type="application/json">')[1].split("</script>")[0])
            assert cfg["user"]["name"] == f"user-{role}" and cfg["user"]["role"] == role
            assert cfg["user"]["may"]["flag"] == may(role, "POST", "/events/{event_id}/flags")
            assert cfg["token"] == key  # the page's script sends the key it was opened with
            assert 'id="whoami"' in html
        js = c.get("/ui/static/ui.js", headers=_bearer(env["keys"]["viewer"])).text
        assert 'may("flag")' in js  # the flag form and unflag buttons are hidden without the role


def test_audit_log_paging_out_of_range_is_a_422_never_a_500(env):
    """A 64-bit catalog integer bounds the offset; an infinite or negative `since` and a user name with a
    NUL byte are refused (found by the schema fuzzer: an offset of 10**20 overflowed SQLite's INTEGER,
    and PostgreSQL's text cannot hold a NUL)."""
    admin = _admin(env)
    for path in ("/audit-log", "/audit-log.csv"):
        for params in ({"offset": 10**20}, {"since": "inf"}, {"since": -1}, {"user": "a\x00b"}):
            r = admin.get(path, params=params)
            assert r.status_code == 422, (path, params, r.status_code, r.text[:200])
        assert admin.get(path, params={"offset": 2**62}).status_code == 200
