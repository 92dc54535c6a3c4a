"""Start-up, health and metrics, security headers, the request size guard, and the error mapping."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from neuronav.config import Settings
from neuronav.errors import (
    ConfigError,
    DicomReadError,
    InputError,
    LifecycleError,
    NeuroNavError,
    NotFoundError,
    ReportError,
)
from neuronav.security.errors import (
    AccountLocked,
    AccountStateError,
    AuthError,
    CsrfError,
    InvalidToken,
    PasswordPolicyError,
    PermissionDenied,
    SecondFactorRequired,
)
from neuronav.service import create_app
from neuronav.service.app import BodySizeMiddleware, error_response, error_status
from neuronav.service.routes.health import set_jobs_source
from neuronav.storage.errors import ObjectNotFoundError, StorageIntegrityError, UploadTooLargeError
from neuronav.storage.store import ObjectStore

PHI = "DOE^JANE 1961-02-03"


@pytest.fixture
def probe_app(app: FastAPI) -> FastAPI:
    """The app plus test routes: one that fails unexpectedly (quoting patient data), one that reads a body."""
    probe = APIRouter(prefix="/test-probe", tags=["health"])

    @probe.get("/boom")
    def boom() -> None:
        """Test only."""
        raise RuntimeError(f"could not parse {PHI}")

    @probe.get("/integrity")
    def integrity() -> None:
        """Test only."""
        raise StorageIntegrityError("chunk 3 fails authentication", "obj_" + "0" * 32)

    @probe.post("/echo-size")
    async def echo_size(request: Request) -> dict[str, int]:
        """Test only."""
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    app.include_router(probe)
    return app


def test_start_up_migrates_opens_the_store_and_sweeps_it(settings: Settings) -> None:
    leftover = settings.storage / "tmp" / "crashed-write.partial"
    ObjectStore.from_settings(settings)  # the folders
    leftover.write_bytes(b"half an upload")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    app = create_app(settings)
    with TestClient(app) as client:
        assert isinstance(app.state.store, ObjectStore)
        assert not leftover.exists()
        assert client.get("/readyz").json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}


def test_liveness(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readiness_is_503_when_the_database_is_unreachable(client: TestClient, app: FastAPI) -> None:
    settings: Settings = app.state.settings
    app.state.settings = settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["database"].startswith("unavailable (")
    assert response.json()["checks"]["storage"] == "ok"


def test_readiness_is_503_when_storage_is_not_writable(client: TestClient, app: FastAPI) -> None:
    tmp = app.state.store.root / "tmp"
    shutil.rmtree(tmp)
    tmp.write_bytes(b"not a folder any more")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "storage": "unavailable (NotADirectoryError)"}


def test_metrics_count_requests_by_route_template_and_status(client: TestClient, app: FastAPI) -> None:
    client.get("/healthz")
    client.get("/healthz")
    client.get("/api/admin/users/abc")  # 401, counted under its template, not the URL
    client.get("/no/such/page")
    set_jobs_source(app, lambda: {"queued": 2, "running": 1})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'neuronav_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in text
    assert 'neuronav_http_requests_total{method="GET",route="/api/admin/users/{user_id}",status="401"} 1.0' in text
    assert 'neuronav_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'neuronav_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"}' in text
    assert 'neuronav_jobs{state="queued"} 2.0' in text and 'neuronav_jobs{state="running"} 1.0' in text
    assert "abc" not in text

    def failing() -> dict[str, float]:
        raise RuntimeError("queue down")

    set_jobs_source(app, failing)
    assert client.get("/metrics").status_code == 200


def test_security_headers_on_every_response(client: TestClient) -> None:
    for path in ("/healthz", "/api/auth/me", "/nowhere"):
        headers = client.get(path).headers
        assert headers["content-security-policy"].startswith("default-src 'self'")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in headers  # development mode
    assert client.get("/api/auth/me").headers["cache-control"] == "no-store"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "frame-ancestors 'none'" in docs.headers["content-security-policy"]


def test_hsts_outside_development(settings: Settings) -> None:
    production = settings.model_copy(update={"env": "production"})
    with TestClient(create_app(production)) as client:
        assert client.get("/healthz").headers["strict-transport-security"].startswith("max-age=")


def test_a_declared_oversized_body_is_refused_before_it_is_read(probe_app: FastAPI, client: TestClient) -> None:
    limit = probe_app.state.settings.max_body_bytes  # not the upload route: the JSON limit
    assert client.post("/test-probe/echo-size", content=b"x" * limit).json() == {"size": limit}
    response = client.post("/test-probe/echo-size", content=b"x" * (limit + 1))
    assert response.status_code == 413
    assert response.json()["error"] == "UploadTooLargeError" and str(limit) in response.json()["detail"]
    assert response.headers["x-content-type-options"] == "nosniff"
    login = client.post(
        "/api/auth/login", content=b"{" + b" " * limit + b"}", headers={"content-type": "application/json"}
    )
    assert login.status_code == 413


def test_a_streamed_body_is_cut_off_at_the_limit(probe_app: FastAPI, client: TestClient) -> None:
    limit = probe_app.state.settings.max_body_bytes  # not the upload route: the JSON limit

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 10_000 + 2):
            yield b"y" * 10_000

    response = client.post("/test-probe/echo-size", content=chunks())  # no Content-Length: chunked
    assert response.status_code == 413 and response.json()["error"] == "UploadTooLargeError"


def test_an_invalid_content_length_is_a_bad_request() -> None:
    sent: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be called")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"12abc")]}
    asyncio.run(BodySizeMiddleware(inner, max_bytes=10)(scope, receive, send))
    assert sent[0]["status"] == 400


def test_an_unexpected_error_is_a_generic_500_logged_without_its_message(
    probe_app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="neuronav.service"):
        response = client.get("/test-probe/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "InternalError" and body["error_id"] in body["detail"]
    assert "DOE" not in response.text and "RuntimeError" not in response.text
    assert response.headers["content-security-policy"]  # still behind the security headers
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert body["error_id"] in logged and "RuntimeError" in logged and "/test-probe/boom" in logged
    assert "DOE" not in logged and "1961" not in logged
    metrics = client.get("/metrics").text
    assert 'route="/test-probe/boom",status="500"' in metrics


def test_a_storage_integrity_error_is_a_500_with_an_error_id(probe_app: FastAPI, client: TestClient) -> None:
    response = client.get("/test-probe/integrity")
    assert response.status_code == 500
    assert response.json()["error"] == "StorageIntegrityError" and "obj_" not in response.json()["detail"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (AccountLocked("locked", 60), 429),
        (AuthError("no"), 401),
        (InvalidToken("no"), 401),
        (SecondFactorRequired("code"), 401),
        (PermissionDenied("no"), 403),
        (CsrfError("no"), 403),
        (AccountStateError("no"), 409),
        (PasswordPolicyError(["too short"]), 422),
        (UploadTooLargeError("big"), 413),
        (InputError("bad"), 400),
        (DicomReadError("bad", "a.dcm"), 400),
        (ObjectNotFoundError("none"), 404),
        (NotFoundError("none"), 404),
        (LifecycleError("not now"), 409),
        (ReportError("cannot"), 400),
        (ConfigError("bad"), 500),
        (StorageIntegrityError("altered"), 500),
        (NeuroNavError("other"), 400),
        (ValueError("unexpected"), 500),
    ],
)
def test_each_error_maps_to_one_status(error: Exception, status: int) -> None:
    assert error_status(error) == status
    response = error_response(error, {"type": "http", "method": "GET"})
    assert response.status_code == status


def test_error_bodies_name_the_exception_and_carry_their_headers() -> None:
    locked = error_response(AccountLocked("Too many failed sign-in attempts.", 120), {"method": "POST"})
    assert locked.headers["retry-after"] == "120"
    assert locked.body == b'{"detail":"Too many failed sign-in attempts.","error":"AccountLocked"}'
    policy = error_response(PasswordPolicyError(["too short", "too common"]), {"method": "POST"})
    assert b'"problems":["too short","too common"]' in policy.body


def test_validation_errors_do_not_echo_the_input(client: TestClient) -> None:
    secret = "my-secret-password-" * 300
    response = client.post("/api/auth/login", json={"email": "a@b.example", "password": secret, "totp_code": [1]})
    assert response.status_code == 422 and response.json()["error"] == "RequestValidationError"
    assert "my-secret-password" not in response.text
