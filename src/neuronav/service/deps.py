"""Dependencies of the HTTP routes: what a route needs, parsed from the request (thin).

Routes declare what they need with these names (FastAPI ``Annotated`` dependencies)::

    SettingsDep        the Settings the app was created with (``app.state.settings``)
    DbDep              a SQLAlchemy Session: committed when the route returns, rolled back when it raises
    StoreDep           the one ObjectStore of the app (``app.state.store``, opened at start-up)
    BreakGlassDep      the break-glass grants (:class:`~neuronav.workflow.breakglass.BreakGlassRegistry`)
    CurrentUserDep     the signed-in :class:`~neuronav.security.access.Actor`, or 401
    requires(P)        a dependency factory: the Actor when their role (or open break-glass) grants P, or 403
    operator_access    the API docs (/docs, /redoc, /openapi.json, /docs/assets/*): open in development,
                       else an admin's session (``settings:manage``), or 401 / 403
    metrics_access     /metrics: as operator_access, or ``Authorization: Bearer <NEURONAV_METRICS_TOKEN>``
    Offset, Version    bounded integer query parameters (``0 ≤ offset``, ``1 ≤ version``, both ≤ 2^31 − 1):
                       a larger number is a 422, never an overflow in the database driver (a 500)
    AuthFirstRoute     the route class of every router: on a route that takes a body and a signed-in user,
                       the user and the permissions are checked *before* the body is read (FastAPI reads
                       bodies, multipart uploads spooled to disk included, before it runs dependencies)
    DateTime           a date-time query parameter: ISO 8601 text only (``2026-01-31T14:00:00Z``; UTC if no
                       zone), never a number read as a Unix time (``since=0.5``) nor a bare date: 422

Who the caller is, is decided by :func:`neuronav.workflow.signin.authenticate` from the bearer access
token, or from the HttpOnly session cookie with its ``X-CSRF-Token``; permission checks and their audit
events are :mod:`neuronav.workflow.access`. Nothing here decides a rule.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Coroutine, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import Depends, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from neuronav.config import Settings
from neuronav.db.session import session_scope
from neuronav.errors import InputError
from neuronav.security import network, tokens
from neuronav.security.access import Actor, allowed
from neuronav.security.permissions import Permission
from neuronav.storage.store import ObjectStore
from neuronav.workflow.access import authorize
from neuronav.workflow.breakglass import BreakGlassRegistry
from neuronav.workflow.signin import Credentials, authenticate


class UnsupportedMediaTypeError(InputError):
    """A request body of a content type the route does not take: HTTP 415."""


# -- bounded query parameters -------------------------------------------------------------------

# Every integer query parameter has an upper bound: SQLite and PostgreSQL refuse integers past 2^63 − 1
# (OverflowError, a 500) and PostgreSQL's INTEGER columns past 2^31 − 1.
MAX_QUERY_INT = 2**31 - 1

Offset = Annotated[int, Query(ge=0, le=MAX_QUERY_INT, description="Rows to skip (pagination).")]
Version = Annotated[int | None, Query(ge=1, le=MAX_QUERY_INT, description="A stored version (default: the newest).")]

# ISO 8601 date and time, the seconds, fraction and zone optional (UTC if none). Pydantic alone would also
# read a number as a Unix time (since=0.5 is 1970) and a bare date as midnight: the OpenAPI document and
# the check are this one pattern, calendar included (30 days in April, 29 February in leap years only),
# so that a date the schema allows is a date the route takes. [0-9], not \d: Python's \d is any digit.
_YEAR = "([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"  # 0001 to 9999
_MONTH_DAY = "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))"
_LEAP_DAY = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29"
DATETIME_PATTERN = (
    rf"^({_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
    r"(:[0-5][0-9](\.[0-9]{1,6})?)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$"
)
_DATETIME = re.compile(DATETIME_PATTERN)


def _iso_datetime(value: object) -> object:
    if not isinstance(value, datetime) and not (isinstance(value, str) and _DATETIME.fullmatch(value)):
        raise ValueError("an ISO 8601 date-time is expected, such as 2026-01-31T14:00:00Z (UTC if no zone)")
    return value


def _in_utc(value: datetime) -> datetime:
    try:  # 9999-12-31T23:59-01:00 is past the last date-time Python can hold: a 422, not an OverflowError
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the date-time is out of range in UTC") from exc


DateTime = Annotated[
    datetime,
    BeforeValidator(_iso_datetime),
    AfterValidator(_in_utc),
    WithJsonSchema({"type": "string", "pattern": DATETIME_PATTERN, "examples": ["2026-01-31T14:00:00Z"]}),
]


# -- settings, database, store -------------------------------------------------------------------


def app_settings(request: Request) -> Settings:
    """The Settings the app was created with."""
    return cast(Settings, request.app.state.settings)


SettingsDep = Annotated[Settings, Depends(app_settings)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    """One database session per request: committed when the route returns, rolled back when it raises."""
    with session_scope(settings.database) as session:
        yield session


# scope="function": the commit happens when the route function returns, before the response is sent
DbDep = Annotated[Session, Depends(get_db, scope="function")]


def get_store(request: Request) -> ObjectStore:
    """The app's ObjectStore (opened, and swept, at start-up)."""
    store = getattr(request.app.state, "store", None)
    if not isinstance(store, ObjectStore):
        raise RuntimeError("the object store is not open: the app's start-up (lifespan) has not run")
    return store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


def client_address(request: Request) -> str:
    """The client's address, the one every audit event and per-address throttle uses: the socket's peer,
    or behind a proxy listed in ``NEURONAV_TRUSTED_PROXIES`` the right-most untrusted address of
    ``X-Forwarded-For`` (:func:`neuronav.security.network.client_address`). The ASGI server must not
    rewrite the client itself (uvicorn ``proxy_headers=False``, as ``neuronav serve`` runs it)."""
    peer = request.client.host if request.client is not None else None
    proxies = network.parse_networks(app_settings(request).trusted_proxies)
    return network.client_address(peer, request.headers.getlist("x-forwarded-for"), proxies)


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The matched route's path template (``/api/studies/{study_id}``), never the raw URL; ``<unmatched>``."""
    # FastAPI keeps included routers unflattened: the effective context has the template with every prefix
    fastapi_scope = scope.get("fastapi")
    context = fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    for candidate in (getattr(context, "starlette_route", None), context, scope.get("route")):
        path = getattr(candidate, "path_format", None) or getattr(candidate, "path", None)
        if isinstance(path, str) and path:
            return path
    return "<unmatched>"


def route_template(request: Request) -> str:
    """The request's route template (:func:`route_path`)."""
    return route_path(request.scope)


# -- break-glass ---------------------------------------------------------------------------------


def get_breakglass_registry(db: DbDep) -> BreakGlassRegistry:
    return BreakGlassRegistry(db)


BreakGlassDep = Annotated[BreakGlassRegistry, Depends(get_breakglass_registry)]


# -- the current user ----------------------------------------------------------------------------


_bearer = HTTPBearer(
    auto_error=False,
    description="The access token from POST /api/auth/login (browsers may use the session cookie instead).",
)


def session_cookie_name(settings: Settings) -> str:
    return tokens.DEV_SESSION_COOKIE if settings.development else tokens.SESSION_COOKIE


# what AuthFirstRoute decided before the body was read (request.state): reused, not decided twice
_ACTOR_STATE = "neuronav_actor"
_GRANTED_STATE = "neuronav_granted"


def _authenticate(request: Request, db: Session, settings: Settings, bearer: str | None) -> Actor:
    presented = Credentials(
        bearer=bearer,
        session_token=request.cookies.get(session_cookie_name(settings)),
        csrf_header=request.headers.get(tokens.CSRF_HEADER),
    )
    return authenticate(
        db,
        settings,
        presented,
        method=request.method,
        route=route_template(request),
        client=client_address(request),
    )


def get_current_user(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The signed-in user (:func:`neuronav.workflow.signin.authenticate`): bearer access token, or session
    cookie + CSRF header."""
    checked = getattr(request.state, _ACTOR_STATE, None)
    if isinstance(checked, Actor):  # by AuthFirstRoute, before the body was read
        return checked
    return _authenticate(request, db, settings, credentials.credentials if credentials is not None else None)


CurrentUserDep = Annotated[Actor, Depends(get_current_user)]


def requires(permission: Permission) -> Callable[..., Actor]:
    """A dependency: the Actor when their role (or open break-glass) grants ``permission``, else 403.

    A refusal is audited (``access.denied``); an access through a break-glass is audited
    (``breakglass.access``). Use it as ``user: Annotated[Actor, Depends(requires(P.STUDY_READ))]``.
    """

    def dependency(request: Request, user: CurrentUserDep, db: DbDep) -> Actor:
        if permission in getattr(request.state, _GRANTED_STATE, ()):  # granted (and audited) by AuthFirstRoute
            return user
        authorize(db, user, permission, context=_context(request))
        return user

    dependency.__name__ = f"requires_{permission.name.lower()}"
    dependency.permission = permission  # type: ignore[attr-defined]  # read by AuthFirstRoute
    return dependency


def requires_any(*choices: Permission) -> Callable[..., Actor]:
    """A dependency: the Actor when their role (or open break-glass) grants at least one of ``choices``
    (the first that does is audited as :func:`requires` audits it), else 403 naming the first.

    For a route whose workflow function shapes the answer to what the actor holds, e.g. the worklist:
    every study for ``study:list``, the status of one's own uploads for ``study:status``.
    """

    def dependency(request: Request, user: CurrentUserDep, db: DbDep) -> Actor:
        held = next((p for p in choices if allowed(user, p)), choices[0])
        authorize(db, user, held, context=_context(request))
        return user

    dependency.__name__ = "requires_any_" + "_".join(p.name.lower() for p in choices)
    dependency.permissions = frozenset(choices)  # type: ignore[attr-defined]
    return dependency


# -- operator pages: API docs and metrics ---------------------------------------------------------


def _operator(
    request: Request, db: Session, settings: Settings, credentials: HTTPAuthorizationCredentials | None
) -> None:
    user = get_current_user(request, db, settings, credentials)
    context = {"route": route_template(request), "method": request.method}
    authorize(db, user, Permission.SETTINGS_MANAGE, context=context)


def operator_access(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The API documentation: open in development; outside it an admin's session (401 / 403 otherwise),
    since the full API description is a map for an attacker (OWASP ASVS 14.3)."""
    if not settings.development:
        _operator(request, db, settings, credentials)


def metrics_access(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """``/metrics``: open in development; outside it the scrape token (``NEURONAV_METRICS_TOKEN``, as a
    bearer token, compared in constant time) or an admin's session."""
    if settings.development:
        return
    token = settings.metrics_token
    presented = credentials.credentials if credentials is not None else ""
    if token and secrets.compare_digest(presented.encode(), token.encode()):
        return
    _operator(request, db, settings, credentials)


def _context(request: Request) -> dict[str, Any]:
    return {
        "route": route_template(request),
        "method": request.method,
        "params": {k: str(v)[:64] for k, v in request.path_params.items()},
    }


# -- authentication before the body --------------------------------------------------------------


def _guards(dependant: Dependant) -> tuple[bool, list[Permission]]:
    """Whether the route needs a signed-in user, and the permissions it requires (``requires(P)``)."""
    needs_user, permissions = False, []
    for sub in dependant.dependencies:
        if sub.call is get_current_user:
            needs_user = True
        permission = getattr(sub.call, "permission", None)
        if isinstance(permission, Permission):
            permissions.append(permission)
        below_user, below = _guards(sub)
        needs_user = needs_user or below_user
        permissions.extend(p for p in below if p not in permissions)
    return needs_user, permissions


def _check_first(request: Request, permissions: list[Permission]) -> None:
    """Authenticate and authorise in a short transaction of its own (refusals and break-glass accesses
    audited and committed there); the route's dependencies then reuse the result."""
    settings = app_settings(request)
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    bearer = credentials if scheme.lower() == "bearer" and credentials else None
    with session_scope(settings.database) as db:
        actor = _authenticate(request, db, settings, bearer)
        for permission in permissions:
            authorize(db, actor, permission, context=_context(request))
    setattr(request.state, _ACTOR_STATE, actor)
    setattr(request.state, _GRANTED_STATE, frozenset(permissions))


class AuthFirstRoute(APIRoute):
    """A route that checks who is calling, and their permissions, before it reads a request body.

    FastAPI reads (and, for multipart, spools to disk) the whole body before it runs a route's
    dependencies, so without this an anonymous client could make the server receive a 2 GiB upload
    before being told 401. Routes without a body, or without a signed-in user (sign-in, registration),
    are left as FastAPI makes them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needs_user, permissions = _guards(self.dependant)
        if self.body_field is None or not needs_user:
            return handler

        async def checked_first(request: Request) -> Response:
            await run_in_threadpool(_check_first, request, permissions)
            return await handler(request)

        return checked_first


__all__ = [
    "DATETIME_PATTERN",
    "MAX_QUERY_INT",
    "AuthFirstRoute",
    "BreakGlassDep",
    "CurrentUserDep",
    "DateTime",
    "DbDep",
    "Offset",
    "SettingsDep",
    "StoreDep",
    "UnsupportedMediaTypeError",
    "Version",
    "app_settings",
    "client_address",
    "get_current_user",
    "get_db",
    "get_store",
    "metrics_access",
    "operator_access",
    "requires",
    "route_path",
    "route_template",
    "session_cookie_name",
]
