"""Attack: exhausting the service before (or without) proving who you are (issue 17, finding 4).

* An anonymous client streaming a huge upload was received, and spooled to disk, before its missing
  credentials were noticed (FastAPI reads a body before it runs a route's dependencies): now the user
  and the permission are checked first (``AuthFirstRoute``), and not one byte of the body is read.
* JSON routes shared the 2 GiB upload cap: every body but the upload's is capped at 1 MiB.
* A client that stops sending its body held a worker for as long as it liked: 408 after
  ``NEURONAV_READ_TIMEOUT_S``; ``neuronav serve`` closes idle keep-alive connections.
* A 300,000-character impression was stored (and made every PDF export crawl): narrative texts are
  bounded.
* Uploads, analyses, exports and image reads had no per-user limit: 429 with Retry-After, counted in
  the database so that every server process shares the count.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from neuronav.config import Settings
from neuronav.db.session import session_scope
from neuronav.errors import LifecycleError
from neuronav.report.build import build_report
from neuronav.report.lifecycle import MAX_NARRATIVE_CHARS, edit
from neuronav.security import throttle
from neuronav.security.throttle import RATE_LIMITS, RateLimit, ThrottleState
from neuronav.service import create_app
from neuronav.service.deps import AuthFirstRoute, _guards
from neuronav.service.routes import ROUTERS
from neuronav.service.server import MAX_CONNECTIONS, GuardedH11Protocol
from neuronav.workflow import throttles
from tests.analysis.findings_factory import make_findings
from tests.service.conftest import People, Person, audit_events

CHUNK = 64 * 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Uploads may be large (200 MiB, as a site sets them); a stalled body is given up after 0.5 s."""
    return settings.model_copy(update={"max_upload_bytes": 200 * 1024 * 1024, "read_timeout_s": 0.5})


class Sent:
    """What a raw ASGI client saw: the status, the body, and how many body chunks the server pulled."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""
        self.chunks_read = 0


def drive(
    app: FastAPI,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    chunks: int,
    stall: bool = False,
    within: float = 20.0,
) -> Sent:
    """Send a request straight to the ASGI app as a network client would, chunk by chunk (no
    Content-Length); ``stall``: after the chunks, send nothing more, ever."""
    sent = Sent()

    async def receive() -> dict[str, Any]:
        if sent.chunks_read < chunks:
            sent.chunks_read += 1
            more = sent.chunks_read < chunks or stall
            return {"type": "http.request", "body": b"x" * CHUNK, "more_body": more}
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.status = int(message["status"])
        elif message["type"] == "http.response.body":
            sent.body += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), within))
    return sent


MULTIPART = {"content-type": "multipart/form-data; boundary=neuronav-attack"}


# -- authentication before the body --------------------------------------------------------------


def test_an_anonymous_upload_is_refused_before_one_byte_of_it_is_read(app: FastAPI, client: TestClient) -> None:
    sent = drive(app, "POST", "/api/studies", headers=MULTIPART, chunks=200)  # 12.5 MiB offered
    assert sent.status == 401
    assert sent.chunks_read == 0


def test_an_upload_by_someone_who_may_not_upload_is_refused_before_its_body_is_read(
    app: FastAPI, client: TestClient, people: People, settings: Settings
) -> None:
    neurologist = people.create("neurologist")
    headers = {**MULTIPART, **people.direct_headers(neurologist)}
    before = len(audit_events(settings, "access.denied"))
    sent = drive(app, "POST", "/api/studies", headers=headers, chunks=200)
    assert sent.status == 403
    assert sent.chunks_read == 0
    assert len(audit_events(settings, "access.denied")) == before + 1  # refused once, audited once


def test_an_anonymous_json_body_is_not_read_either(app: FastAPI, client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    for path in ("/api/reports/rep_x/edit", "/api/auth/password", "/api/admin/breakglass"):
        sent = drive(app, "POST", path, headers=headers, chunks=8)
        assert (sent.status, sent.chunks_read) == (401, 0), path


def test_the_signed_in_user_still_gets_the_route(client: TestClient, people: People) -> None:
    technician = people.create("technician")
    headers = people.direct_headers(technician)
    # checked first, then the body is read: a JSON body on the upload route is refused as such (415)
    response = client.post("/api/studies", headers=headers, json={})
    assert response.status_code == 415, response.text
    password = client.post("/api/auth/password", headers=headers, json={"current_password": "x", "new_password": "y"})
    assert password.json()["detail"] == "The current password is wrong."  # the body was read and judged


def test_every_route_with_a_body_and_a_user_checks_the_user_first() -> None:
    checked = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.body_field is not None and _guards(route.dependant)[0]:
                assert isinstance(route, AuthFirstRoute), f"{route.path} reads its body before its user is known"
                checked.append(route.path)
    assert "/api/studies" in checked and "/api/reports/{report_id}/edit" in checked


# -- body limits per route -------------------------------------------------------------------------


def test_json_routes_take_a_small_body_and_only_the_upload_the_upload_cap(
    client: TestClient, people: People, settings: Settings
) -> None:
    assert settings.max_body_bytes == 1024**2  # the default
    body = b"{" + b" " * (2 * 1024**2) + b"}"  # 2 MiB: far under the upload cap of 200 MiB
    login = client.post("/api/auth/login", content=body, headers={"content-type": "application/json"})
    assert login.status_code == 413 and login.json()["error"] == "UploadTooLargeError"
    assert str(settings.max_body_bytes) in login.json()["detail"]
    technician = people.create("technician")
    upload = client.post(
        "/api/studies",
        headers={**people.direct_headers(technician), **MULTIPART},
        content=b"--neuronav-attack\r\n" + b"x" * (2 * 1024**2),
    )
    assert upload.status_code != 413  # the upload route has its own (large) cap: read, then refused as bad input


# -- timeouts --------------------------------------------------------------------------------------


def test_a_body_that_stops_arriving_gets_408(app: FastAPI, client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    sent = drive(app, "POST", "/api/auth/login", headers=headers, chunks=1, stall=True, within=10)
    assert sent.status == 408
    assert b"RequestTimeout" in sent.body


def test_serve_runs_uvicorn_with_the_connection_guards(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from neuronav import cli, config

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(config, "get_settings", lambda: settings.model_copy(update={"keep_alive_s": 7}))
    result = CliRunner().invoke(cli.app, ["serve", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert seen["timeout_keep_alive"] == 7 and seen["limit_concurrency"] == MAX_CONNECTIONS
    assert issubclass(seen["http"], GuardedH11Protocol) and seen["http"].header_timeout_s == settings.read_timeout_s


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, int]]:
    """The app under a real uvicorn, as `neuronav serve` runs it (headers due within 0.5 s)."""
    import uvicorn

    app = create_app(settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **app.state.uvicorn_options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)


def test_half_open_requests_are_dropped_within_the_read_timeout(served: tuple[str, int]) -> None:
    started = time.monotonic()
    half_open = []
    for _ in range(20):
        conn = socket.create_connection(served, timeout=5)
        conn.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")  # no end
        half_open.append(conn)
    stalled_body = socket.create_connection(served, timeout=5)
    stalled_body.sendall(
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
    )
    for conn in half_open:
        with conn:
            assert conn.recv(1024) == b""  # closed by the server, not by the 5 s client timeout
    with stalled_body:
        assert stalled_body.recv(4096).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 4
    with socket.create_connection(served, timeout=5) as conn:  # a whole request is still served
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert conn.recv(1024).startswith(b"HTTP/1.1 200")


# -- field lengths ---------------------------------------------------------------------------------


def test_a_300000_character_impression_is_refused() -> None:
    report = build_report(make_findings(enhancing_ml=10.0, whole_tumour_ml=30.0))
    with pytest.raises(LifecycleError, match=str(MAX_NARRATIVE_CHARS)):
        edit(report, {"/narrative/impression": "x" * 300_000}, who="Dr A", role="radiologist")
    long_but_fair = edit(report, {"/narrative/impression": "y" * MAX_NARRATIVE_CHARS}, who="Dr A", role="radiologist")
    assert len(long_but_fair.narrative.impression) == MAX_NARRATIVE_CHARS


# -- per-user rate limits --------------------------------------------------------------------------

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_rate_limit_counts_uses_in_a_window_and_says_when_to_come_back() -> None:
    limit = RateLimit("rate:export", 3, timedelta(hours=1), "report exports")
    state = ThrottleState()
    for minute in range(3):
        assert throttle.check_rate(state, limit, now=T0 + timedelta(minutes=minute)).allowed
        state = throttle.record_use(state, limit, now=T0 + timedelta(minutes=minute))
    refused = throttle.check_rate(state, limit, now=T0 + timedelta(minutes=10))
    assert not refused.allowed and refused.retry_after_s == 50 * 60
    assert refused.message == "Too many report exports in an hour. Try again in 50 minutes."
    assert throttle.check_rate(state, limit, now=T0 + timedelta(hours=1)).allowed  # a new window
    assert throttle.record_use(state, limit, now=T0 + timedelta(hours=1)).failures == 1


def _exhaust(settings: Settings, limit: RateLimit, person: Person) -> None:
    """Store ``person`` at the end of their allowance (as after ``max_uses`` requests, on any server)."""
    now = datetime.now(UTC)
    with session_scope(settings.database) as db:
        used = ThrottleState(failures=limit.max_uses, window_start=now, last_failure=now)
        throttles.update(db, limit.scope, person.id, lambda _: used)


def _uses(settings: Settings, limit: RateLimit, person: Person) -> int:
    with session_scope(settings.database) as db:
        return throttles.load(db, limit.scope, person.id).failures


@pytest.fixture
def no_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("neuronav.workflow.jobs.dispatch", lambda settings, analysis_id: None)


@pytest.mark.parametrize(
    ("scope", "role", "method", "path"),
    [
        ("rate:upload", "technician", "POST", "/api/studies"),
        ("rate:analysis", "radiologist", "POST", "/api/studies/std_none/analyses?force=true"),
        ("rate:export", "radiologist", "GET", "/api/reports/rep_none/export/pdf"),
        ("rate:image", "radiologist", "GET", "/api/studies/std_none/images/reference"),
    ],
)
def test_expensive_actions_are_rate_limited_per_user_across_servers(
    scope: str,
    role: str,
    method: str,
    path: str,
    app: FastAPI,
    client: TestClient,
    people: People,
    settings: Settings,
    no_jobs: None,
) -> None:
    limit = RATE_LIMITS[scope]  # type: ignore[index]
    person, other = people.create(role), people.create(role)
    headers = people.direct_headers(person)
    files = [("files", ("study.zip", b"PK\x05\x06" + b"\x00" * 18, "application/zip"))]
    extra: dict[str, Any] = {"files": files} if scope == "rate:upload" else {}
    first = client.request(method, path, headers=headers, **extra)
    assert first.status_code in (400, 404), first.text  # nothing there, but it counted
    assert _uses(settings, limit, person) == 1
    _exhaust(settings, limit, person)
    with TestClient(create_app(settings)) as second_server:  # another process on the same database
        refused = second_server.request(method, path, headers=headers, **extra)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "RateLimited" and int(refused.headers["retry-after"]) > 3000
    assert limit.what in refused.json()["detail"]
    denied = audit_events(settings, "rate.limited")
    assert denied[-1].actor_id == person.id and denied[-1].detail["limit"] == scope
    # the limit is the user's own: a colleague is not refused
    assert client.request(method, path, headers=people.direct_headers(other), **extra).status_code != 429


def test_rate_limits_are_stored_under_scopes_the_table_takes() -> None:
    assert all(len(scope) <= 20 for scope in RATE_LIMITS)  # throttles.scope is String(20)
