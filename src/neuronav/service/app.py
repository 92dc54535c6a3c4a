"""The FastAPI application: :func:`create_app`.

* Start-up (lifespan), under ``neuronav serve`` or any ASGI server: ``migrate(settings.database)``,
  one :class:`ObjectStore` for the process, swept of interrupted writes, private temporary folders no
  process uses removed (:func:`~neuronav.workflow.uploads.sweep_private_tmp`), file names stored in
  clear encrypted (:func:`~neuronav.workflow.operations.encrypt_stored_names`), analyses whose lease
  expired re-queued (:func:`~neuronav.workflow.jobs.recover_at_start`); then background threads
  until shutdown: the maintenance sweep (expired job leases, temporary folders;
  :func:`~neuronav.workflow.jobs.start_maintenance`) and the audit anchor shipper
  (:func:`~neuronav.workflow.anchors.start_shipping`), the outbox's worker (deliveries to HL7 / FHIR
  destinations, :func:`~neuronav.integrations.outbox.start_outbox`), the HL7 order listener when
  ``NEURONAV_HL7_LISTEN`` is set, and, when ``NEURONAV_DICOM_PORT`` is set, the DICOM listener
  (:mod:`neuronav.integrations.dimse.listener`, on ``NEURONAV_DICOM_HOST``, which ``neuronav serve``
  sets to its ``--host`` when empty); ``app.state`` holds ``settings``, ``store``, ``metrics`` and
  ``dicom_listener``. Nothing a
  request decides on is kept in the process: sessions, login and registration throttles and
  break-glass grants are all in the database.
* Routers: every one in :data:`neuronav.service.routes.ROUTERS`.
* Errors are mapped to HTTP here and nowhere else (:func:`error_status`); every error body is
  ``{"detail": "...", "error": "<ExceptionClass>"}``::

      AccountLocked, RateLimited 429 (+ Retry-After) · other AuthError 401 ·
      PermissionDenied 403 (PasswordChangeRequired among them) ·
      AccountStateError 409 · PasswordPolicyError 422 (+ "problems") · UploadTooLargeError 413 ·
      UnsupportedMediaTypeError 415 · InputError 400 · ObjectNotFoundError / NotFoundError 404 ·
      ConflictError 409 · LifecycleError 409 · ReportError 400 ·
      ConfigError, StorageError, ModelError 500 · any other NeuroNavError 400 ·
      anything unexpected 500 with a generic message and an ``error_id``

  A 405 names in ``Allow`` every method of the path (all its routes, not only the first one matched).

  A 500 is logged with its error id, the exception's class and the stack frames, never the
  exception's message (it could quote patient data).
* The OpenAPI document declares every operation's error answers, derived from each route's dependencies
  (:func:`neuronav.service.docs.install_contract`), so the statuses above are part of the contract.
* ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) are served by the app with their assets
  (:mod:`neuronav.service.docs`): no CDN, so they work offline; their CSP names no other host.
  Outside development they, ``/openapi.json`` and ``/metrics`` need an administrator's session
  (``/metrics`` also takes ``NEURONAV_METRICS_TOKEN``): :mod:`neuronav.service.deps`.
* Middleware (outermost first): metrics, security headers (CSP ``default-src 'self'``,
  ``frame-ancestors 'none'``, nosniff, no referrer; ``Cache-Control: no-store`` on the API; HSTS
  outside development), the request size guard (``Content-Length`` above the route's limit → 413
  before the body is read; a body without a length is counted as it streams; the limit is
  ``settings.max_upload_bytes`` on the upload route, ``settings.max_body_bytes`` on every other; a body
  that sends nothing for ``settings.read_timeout_s`` → 408), and the catch-all for unexpected errors.
* Who is calling, and their permission, is checked before a route reads its body
  (:class:`~neuronav.service.deps.AuthFirstRoute`).

Run it with ``app = create_app(settings); uvicorn.run(app, host=..., port=...,
**app.state.uvicorn_options, proxy_headers=False)`` (the options: a deadline for request headers, the
keep-alive timeout, a connection limit: :mod:`neuronav.service.server`; uvicorn's command line:
``--no-proxy-headers``), in as many worker processes (or machines, with PostgreSQL and shared storage)
as needed. The app itself decides the client address, believing ``X-Forwarded-For`` only from
``NEURONAV_TRUSTED_PROXIES`` (:func:`neuronav.service.deps.client_address`); uvicorn's own proxy
handling would trust any value from loopback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neuronav import __version__
from neuronav.config import Settings, get_settings
from neuronav.db.session import migrate
from neuronav.errors import (
    ConfigError,
    ConflictError,
    InputError,
    LifecycleError,
    NeuroNavError,
    NotFoundError,
    ReportError,
)
from neuronav.integrations.hl7.listener import start_listener
from neuronav.integrations.outbox import start_outbox
from neuronav.security.errors import (
    AccountLocked,
    AccountStateError,
    AuthError,
    PasswordPolicyError,
    PermissionDenied,
    RateLimited,
)
from neuronav.service import docs
from neuronav.service.deps import UnsupportedMediaTypeError, route_path
from neuronav.service.docs import DOCS_CSP, DOCS_PATHS
from neuronav.service.routes import ROUTERS
from neuronav.service.routes.health import Metrics
from neuronav.service.server import uvicorn_options
from neuronav.storage.errors import ObjectNotFoundError, StorageError, UploadTooLargeError
from neuronav.storage.store import ObjectStore
from neuronav.workflow.anchors import start_shipping
from neuronav.workflow.jobs import recover_at_start, start_maintenance
from neuronav.workflow.operations import encrypt_stored_names, index_unsearchable, remove_unreferenced
from neuronav.workflow.uploads import sweep_private_tmp

log = logging.getLogger("neuronav.service")

DESCRIPTION = """\
NeuroNav analyses brain MRI studies with AI: tumour detection, segmentation, classification,
measurements and structured reports. **Research software, not for clinical use.**

Authenticate with `POST /api/auth/login`: send the access token as `Authorization: Bearer <token>`,
or (browsers) rely on the HttpOnly session cookie and send `X-CSRF-Token` on unsafe requests.
Errors answer `{"detail": "...", "error": "<ExceptionClass>"}`.
"""

TAGS: list[dict[str, Any]] = [
    {"name": "auth", "description": "Registration, sign-in and sign-out, sessions, passwords, the TOTP second factor."},
    {"name": "users", "description": "User administration: verify professionals, roles, disable and enable."},
    {"name": "admin", "description": "Break-glass: time-limited, reasoned, audited read access for administrators."},
    {"name": "audit", "description": "The hash-chained audit log: search, verify, export as FHIR AuditEvents."},
    {"name": "studies", "description": "Upload MRI studies (DICOM, NIfTI) and follow their processing."},
    {"name": "analyses", "description": "AI analyses of a study: segmentation, detection, measurements."},
    {"name": "reports", "description": "Structured reports: review, sign, amend, export (PDF, DICOM, FHIR, HL7)."},
    {"name": "annotations", "description": "Readers' measurements (distance, ROI) and annotations, per user."},
    {
        "name": "segmentations",
        "description": "A radiologist's corrections of the AI's label map, each a new version the report is "
        "measured from; the AI's original is kept.",
    },
    {
        "name": "dicomweb",
        "description": "DICOMweb (PS3.18) at /dicomweb: QIDO-RS search, WADO-RS retrieve and metadata, STOW-RS store.",
    },
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
]

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
# The web UI (neuronav.service.routes.web): its own scripts only; NiiVue sets element styles and reads
# its font atlas and volumes through data:/blob: URLs, and the WebGL canvas is saved as a blob: image.
UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self' data: blob:; worker-src 'self' blob:; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)
# The API pages (/docs, /redoc) are self-hosted (neuronav.service.docs): no third-party host, scripts
# from 'self' only; they get DOCS_CSP (inline styles for ReDoc, data: images, a blob: worker).
GENERIC_500 = "An internal error occurred. Quote error id {error_id} to the administrator."


# -- the one place errors become HTTP ------------------------------------------------------------


def _model_error(exc: BaseException) -> bool:
    errors = sys.modules.get("neuronav.analysis.models.errors")  # never imported just to check
    model_error = getattr(errors, "ModelError", None)
    return isinstance(model_error, type) and isinstance(exc, model_error)


def error_status(exc: BaseException) -> int:
    """The HTTP status of an exception (500 for anything that is not a NeuroNavError)."""
    if not isinstance(exc, NeuroNavError):
        return 500
    table: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int], ...] = (
        ((AccountLocked, RateLimited), 429),
        (AuthError, 401),
        (PermissionDenied, 403),
        (AccountStateError, 409),
        (PasswordPolicyError, 422),
        (UploadTooLargeError, 413),
        (UnsupportedMediaTypeError, 415),
        (InputError, 400),
        ((ObjectNotFoundError, NotFoundError), 404),
        ((ConflictError, LifecycleError), 409),
        (ReportError, 400),
        ((ConfigError, StorageError), 500),
    )
    for kind, status in table:
        if isinstance(exc, kind):
            return status
    return 500 if _model_error(exc) else 400


def _log_internal(exc: BaseException, error_id: str, method: str, route: str) -> None:
    frames = "".join(traceback.format_tb(exc.__traceback__))
    causes: list[str] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(causes) < 5:
        causes.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    # our own errors carry messages without patient data; anything else may quote input: class only
    what = f"{type(exc).__name__}: {exc}" if isinstance(exc, NeuroNavError) else type(exc).__name__
    log.error(
        "error %s on %s %s: %s (caused by: %s)\n%s",
        error_id,
        method,
        route,
        what,
        ", ".join(causes) or "-",
        frames,
    )


def error_response(exc: BaseException, scope: Scope) -> JSONResponse:
    """The JSON response of an exception (the only mapping of errors to HTTP)."""
    status = error_status(exc)
    headers: dict[str, str] = {}
    if status >= 500:
        error_id = secrets.token_hex(8)
        _log_internal(exc, error_id, str(scope.get("method", "")), route_path(scope))
        name = type(exc).__name__ if isinstance(exc, NeuroNavError) else "InternalError"
        body: dict[str, Any] = {"detail": GENERIC_500.format(error_id=error_id), "error": name, "error_id": error_id}
        return JSONResponse(body, status_code=status)
    body = {"detail": str(exc), "error": type(exc).__name__}
    if isinstance(exc, AccountLocked | RateLimited):
        headers["Retry-After"] = str(max(1, exc.retry_after_s))
    elif isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, PasswordPolicyError):
        body["problems"] = list(exc.problems)
    return JSONResponse(body, status_code=status, headers=headers)


async def _neuronav_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, request.scope)


_HTTP_ERROR_NAMES = {404: "NotFound", 405: "MethodNotAllowed", 408: "RequestTimeout", 413: "UploadTooLargeError"}


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route takes on the request's path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods |= set(route.methods or ())
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = {"detail": exc.detail, "error": _HTTP_ERROR_NAMES.get(exc.status_code, "HTTPException")}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope)) or headers.get("Allow", "")
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # only where and what: pydantic's "input" and "ctx" could echo a password or patient data
    problems = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
    ]
    return JSONResponse({"detail": problems, "error": "RequestValidationError"}, status_code=422)


# -- middleware ----------------------------------------------------------------------------------


class MetricsMiddleware:
    """Counts every request and its duration by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(scope["method"], route_path(scope), status, time.perf_counter() - start)


class SecurityHeadersMiddleware:
    """Adds the security headers to every response (a header the route set itself is kept)."""

    def __init__(self, app: ASGIApp, production: bool) -> None:
        self.app = app
        self.production = production

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        docs = path.startswith(DOCS_PATHS)
        policy = DOCS_CSP if docs else UI_CSP if path == "/" or path.startswith("/assets/") else CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", policy)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if path.startswith("/api/"):
                    headers.setdefault("Cache-Control", "no-store")
                if self.production:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
            await send(message)

        await self.app(scope, receive, send_with_headers)


# the routes that take an upload: only these get settings.max_upload_bytes, every other body max_body_bytes
UPLOAD_ROUTES = frozenset({("POST", "/api/studies")})
UPLOAD_PREFIXES = ("/dicomweb/studies",)  # STOW-RS: POST /dicomweb/studies[/{StudyInstanceUID}]


class BodySizeMiddleware:
    """413 for a declared ``Content-Length`` over the route's limit, before any of the body is read; a
    body sent without a length is counted as it streams and refused when it passes the limit. The limit
    is ``upload_bytes`` on :data:`UPLOAD_ROUTES` and ``max_bytes`` (small: JSON) everywhere else. A body
    that sends nothing for ``read_timeout_s`` gets 408 (a slow client cannot hold a worker)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        upload_bytes: int | None = None,
        read_timeout_s: float | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes if upload_bytes is not None else max_bytes
        self.read_timeout_s = read_timeout_s

    def limit(self, scope: Scope) -> int:
        """The body limit of the request's route (by method and path: routing has not happened yet)."""
        method, path = str(scope.get("method", "")), str(scope.get("path", "")).rstrip("/")
        upload = (method, path) in UPLOAD_ROUTES or (method == "POST" and path.startswith(UPLOAD_PREFIXES))
        return self.upload_bytes if upload else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        too_large = f"The request is larger than the limit of {limit} bytes."
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                length = int(declared)
                if length < 0:
                    raise ValueError(declared)
            except ValueError:
                response = JSONResponse({"detail": "Invalid Content-Length header.", "error": "InputError"}, 400)
                await response(scope, receive, send)
                return
            if length > limit:
                body = {"detail": too_large, "error": "UploadTooLargeError"}
                await JSONResponse(body, 413, headers={"Connection": "close"})(scope, receive, send)
                return
        received = 0
        complete = False

        async def counted_receive() -> Message:
            nonlocal received, complete
            if complete or self.read_timeout_s is None:
                message = await receive()  # after the body: a disconnect is waited for as long as it takes
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.read_timeout_s)
                except TimeoutError:
                    raise StarletteHTTPException(
                        408,
                        f"The request body sent nothing for {self.read_timeout_s:g} seconds.",
                        headers={"Connection": "close"},
                    ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:
                    raise StarletteHTTPException(413, too_large)
            else:
                complete = True
            return message

        await self.app(scope, counted_receive, send)


class UnexpectedErrorMiddleware:
    """The catch-all: an exception no handler mapped becomes a generic 500 with an error id (logged
    without its message). Inside the other middleware, so the 500 still gets headers and is counted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            response = error_response(exc, scope)  # logs it with its error id
            if not started:
                await response(scope, receive, send)


# -- the app -------------------------------------------------------------------------------------


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    migrate(settings.database)
    store = ObjectStore.from_settings(settings)
    swept = store.sweep()
    if swept:
        log.info("storage: removed %d leftovers of interrupted writes", len(swept))
    orphans = remove_unreferenced(settings, store)  # of uploads or jobs killed before their rows were committed
    if orphans:
        log.info("storage: removed %d objects no database row names (interrupted uploads or jobs)", len(orphans))
    app.state.store = store
    leftovers = sweep_private_tmp(settings)  # decrypted studies a killed process left (never one in use)
    if leftovers:
        log.info("tmp: removed %d private temporary folders no process uses", len(leftovers))
    encrypted = encrypt_stored_names(settings, store)  # names stored in clear before migration 0007
    if encrypted:
        log.info("storage: %d stored file names encrypted", encrypted)
    indexed = index_unsearchable(settings, store)  # worklist search tokens of studies received before 0011
    if indexed:
        log.info("worklist: %d studies indexed for search", indexed)
    requeued = recover_at_start(settings)  # jobs whose lease expired, and the embedded queue lost with a process
    if requeued:
        log.info("jobs: %d analyses re-queued", len(requeued))
    maintenance = start_maintenance(settings)  # expired leases and unused temporary folders, every minute
    shipping = start_shipping(settings)  # audit anchors off the server (NEURONAV_AUDIT_ANCHOR_SINK)
    listener = None
    if settings.dicom_port is not None:  # the DICOM listener (NEURONAV_DICOM_PORT; `serve --demo`: 11112)
        from neuronav.integrations.dimse.listener import listen

        listener = listen(settings, store, host=settings.dicom_host or "127.0.0.1", port=settings.dicom_port)
    app.state.dicom_listener = listener
    outbox = start_outbox(settings, store)  # deliveries to hospital systems (HL7, FHIR), with retries
    hl7_listener = start_listener(settings, store)  # orders in over MLLP (NEURONAV_HL7_LISTEN)
    log.info("NeuroNav service %s ready", __version__)
    try:
        yield
    finally:
        if listener is not None:
            listener.stop()
        maintenance.stop()
        outbox.stop()
        if hl7_listener is not None:
            hl7_listener.stop()
        if shipping is not None:
            shipping.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The NeuroNav HTTP service for ``settings`` (default: :func:`neuronav.config.get_settings`)."""
    settings = settings or get_settings()
    metrics = Metrics()
    app = FastAPI(
        title="NeuroNav",
        version=__version__,
        summary="AI analysis of brain MRI (research software, not for clinical use)",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,  # self-hosted instead (neuronav.service.docs)
        redoc_url=None,
        openapi_url=None,  # served by neuronav.service.docs, behind its sign-in outside development
        lifespan=_lifespan,
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(SecurityHeadersMiddleware, production=not settings.development),
            Middleware(
                BodySizeMiddleware,
                max_bytes=settings.max_body_bytes,
                upload_bytes=settings.max_upload_bytes,
                read_timeout_s=settings.read_timeout_s,
            ),
            Middleware(UnexpectedErrorMiddleware),
        ],
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.uvicorn_options = uvicorn_options(settings)  # how `neuronav serve` runs it (service.server)
    app.add_exception_handler(NeuroNavError, _neuronav_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(docs.router)
    for router in ROUTERS:
        app.include_router(router)
    docs.install_contract(app, development=settings.development)  # every operation's error answers
    return app


__all__ = ["create_app", "error_response", "error_status"]
