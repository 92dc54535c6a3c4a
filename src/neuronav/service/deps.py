"""Dependencies of the HTTP routes, and the few helpers every route module shares.

Routes declare what they need with these names (FastAPI ``Annotated`` dependencies)::

    SettingsDep        the Settings the app was created with (``app.state.settings``)
    DbDep              a SQLAlchemy Session: committed when the route returns, rolled back when it raises
    StoreDep           the one ObjectStore of the app (``app.state.store``, opened at start-up)
    CurrentUserDep     the signed-in user (:class:`CurrentUser`), or 401
    requires(P)        a dependency factory: the CurrentUser after ``permissions.require(role, P)``, or 403

How a request is authenticated (:func:`get_current_user`):

* ``Authorization: Bearer <access token>`` — the token's signature and expiry are checked, then its
  session row is loaded and :func:`~neuronav.security.tokens.ensure_session_alive` checks, on every
  request, that the session is neither revoked nor expired and that the user's role and state are
  still those of the token. Logout, password change, role change and disabling take effect at once.
* otherwise the HttpOnly session cookie — the row is found by the token's SHA-256 digest; an unsafe
  method (POST, PUT, PATCH, DELETE) must carry the session's ``X-CSRF-Token``.

Break-glass grants live in the database (table ``breakglass_grants``, one row per session, with its
expiry; :class:`BreakGlassRegistry`), so every server process honours a grant opened through any
other, and a restart keeps it until it expires. Every opening and every access through a grant is
written to the audit log, which is what makes the access accountable.

An account whose password is a one-time password (``users.password_must_change``: made by
``neuronav users create``, ``neuronav serve --demo`` or an administrator's reset) is signed in,
but :func:`get_current_user` answers every route except :data:`PASSWORD_CHANGE_ROUTES` (change the
password, sign out, "who am I") with 403 :class:`~neuronav.security.errors.PasswordChangeRequired`
(audited as ``access.denied``).

:func:`audit_event` writes an audit event with who / role / from where filled in. It is flushed in
the request's transaction: an event that must survive a refusal (a failed sign-in, a denied
permission) is committed by the caller before raising.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neuronav import audit
from neuronav.audit import Outcome
from neuronav.config import Settings
from neuronav.db.models import AuditEventRow, BreakGlassGrantRow, SessionRow, UserRow
from neuronav.db.session import session_factory
from neuronav.errors import InputError, NeuroNavError
from neuronav.security import permissions, tokens
from neuronav.security.accounts import Account, AccountState
from neuronav.security.errors import InvalidToken, PasswordChangeRequired, PermissionDenied
from neuronav.security.permissions import BreakGlass, Grant, Permission, Resource, Role
from neuronav.storage.crypto import decrypt_field, encrypt_field
from neuronav.storage.store import ObjectStore

SIGN_IN_FIRST = "Sign in first: send the access token (Authorization: Bearer …) or the session cookie."
CHANGE_PASSWORD_FIRST = (
    "You signed in with a one-time password: change it first (POST /api/auth/password with the current "
    "and a new password); until then only the password change, sign-out and /api/auth/me are open."
)
# (method, route template) open to an account that must change its one-time password
PASSWORD_CHANGE_ROUTES = frozenset(
    {("POST", "/api/auth/password"), ("POST", "/api/auth/logout"), ("GET", "/api/auth/me")}
)
TOTP_COLUMN = "users.totp_secret_enc"


class NotFoundError(NeuroNavError):
    """A database record (user, study, report, …) that does not exist: HTTP 404."""


class UnsupportedMediaTypeError(InputError):
    """A request body of a content type the route does not take: HTTP 415."""


# -- settings, database, store -------------------------------------------------------------------


def app_settings(request: Request) -> Settings:
    """The Settings the app was created with."""
    return cast(Settings, request.app.state.settings)


SettingsDep = Annotated[Settings, Depends(app_settings)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    """One database session per request: committed when the route returns, rolled back when it raises."""
    session = session_factory(settings.database)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


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
    """The client's address as the ASGI server reports it (behind a proxy: run uvicorn with
    ``proxy_headers`` and ``forwarded_allow_ips`` set to the proxy)."""
    host = request.client.host if request.client is not None else ""
    return (host or "unknown")[:100]


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


class BreakGlassRegistry:
    """Open break-glass grants, one per session, in the request's database session (table
    ``breakglass_grants``): what one server process opens, every other one sees."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def open(self, session_id: str, grant: BreakGlass) -> None:
        """Store ``grant`` for the session, replacing one already open; expired grants are pruned."""
        db = self.db
        db.execute(
            delete(BreakGlassGrantRow)
            .where(BreakGlassGrantRow.expires_at <= datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )
        stmt = select(BreakGlassGrantRow).where(BreakGlassGrantRow.session_id == session_id).with_for_update()
        row = db.scalar(stmt.execution_options(populate_existing=True))
        if row is None:
            try:
                with db.begin_nested():
                    db.add(_grant_row(session_id, grant))
                    db.flush()
                return
            except IntegrityError:  # opened at the same moment through another process: replace it
                row = db.scalar(stmt)
                if row is None:
                    raise
        for name, value in _grant_values(grant).items():
            setattr(row, name, value)
        db.flush()

    def get(self, session_id: str, now: datetime | None = None) -> BreakGlass | None:
        """The session's grant while it is open; None once it has expired."""
        row = self.db.get(BreakGlassGrantRow, session_id)
        if row is None:
            return None
        grant = _grant(row)
        return grant if grant.active(now or datetime.now(UTC)) else None

    def close(self, session_id: str) -> BreakGlass | None:
        """Remove the session's grant; the grant that was open (None if none was, or it had expired)."""
        row = self.db.get(BreakGlassGrantRow, session_id)
        if row is None:
            return None
        grant = _grant(row)
        self.db.delete(row)
        self.db.flush()
        return grant if grant.active(datetime.now(UTC)) else None


def _grant_values(grant: BreakGlass) -> dict[str, Any]:
    return {
        "breakglass_id": grant.breakglass_id,
        "user_id": grant.user_id,
        "role": str(grant.role),
        "reason": grant.reason,
        "study_id": grant.study_id,
        "opened_at": grant.opened_at,
        "expires_at": grant.expires_at,
    }


def _grant_row(session_id: str, grant: BreakGlass) -> BreakGlassGrantRow:
    return BreakGlassGrantRow(session_id=session_id, **_grant_values(grant))


def _grant(row: BreakGlassGrantRow) -> BreakGlass:
    return BreakGlass(
        breakglass_id=row.breakglass_id,
        user_id=row.user_id,
        role=permissions.parse_role(row.role),
        reason=row.reason,
        opened_at=utc(row.opened_at) or row.opened_at,
        expires_at=utc(row.expires_at) or row.expires_at,
        study_id=row.study_id,
    )


def get_breakglass_registry(db: DbDep) -> BreakGlassRegistry:
    return BreakGlassRegistry(db)


BreakGlassDep = Annotated[BreakGlassRegistry, Depends(get_breakglass_registry)]


# -- the current user ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CurrentUser:
    """The authenticated user of a request (an active account with a live session)."""

    id: str
    email: str
    role: Role
    display_name: str
    session_id: str
    breakglass: BreakGlass | None
    client: str
    verified: bool = True
    via: Literal["bearer", "cookie"] = "bearer"
    csrf_token: str | None = None  # set for cookie sessions (the page needs it for unsafe requests)
    password_must_change: bool = False  # signed in with a one-time password (module docstring)


_bearer = HTTPBearer(
    auto_error=False,
    description="The access token from POST /api/auth/login (browsers may use the session cookie instead).",
)


def session_cookie_name(settings: Settings) -> str:
    return tokens.DEV_SESSION_COOKIE if settings.development else tokens.SESSION_COOKIE


def _record(row: SessionRow | None) -> tokens.SessionRecord | None:
    if row is None:
        return None
    return tokens.SessionRecord(row.id, row.user_id, row.expires_at, row.revoked_at)


def get_current_user(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    registry: BreakGlassDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> CurrentUser:
    """The signed-in user: bearer access token (checked against its live session) or session cookie + CSRF."""
    csrf: str | None = None
    via: Literal["bearer", "cookie"]
    if credentials is not None:
        claims = tokens.verify_access_token(credentials.credentials, secret=settings.secret_key)
        found = db.execute(  # the session and its user in one query (every request pays it)
            select(SessionRow, UserRow)
            .join(UserRow, UserRow.id == SessionRow.user_id)
            .where(SessionRow.id == claims.session_id, UserRow.id == claims.user_id)
        ).first()
        row, user = (found[0], found[1]) if found is not None else (None, None)
        tokens.ensure_session_alive(
            claims,
            _record(row),
            current_role=user.role if user is not None else "",
            account_active=user is not None and user.state == "active",
        )
        via = "bearer"
    else:
        token = request.cookies.get(session_cookie_name(settings))
        if not token:
            raise InvalidToken(SIGN_IN_FIRST)
        row = db.scalar(select(SessionRow).where(SessionRow.token_digest == tokens.token_digest(token)))
        user = db.get(UserRow, row.user_id) if row is not None else None
        tokens.ensure_session_token(
            token,
            _record(row),
            row.token_digest if row is not None else "",
            account_active=user is not None and user.state == "active",
        )
        tokens.check_csrf(
            token, request.headers.get(tokens.CSRF_HEADER), secret=settings.secret_key, method=request.method
        )
        csrf = tokens.csrf_token(token, secret=settings.secret_key)
        via = "cookie"
    if user is None or row is None:  # ensure_* raised already; this narrows the types
        raise InvalidToken(SIGN_IN_FIRST)
    if user.password_must_change and (request.method, route_template(request)) not in PASSWORD_CHANGE_ROUTES:
        audit.record(  # the refusal stays in the log although the request fails
            db,
            "access.denied",
            outcome="denied",
            actor_id=user.id,
            actor_role=user.role,
            client=client_address(request),
            detail={"reason": "password_change_required", "route": route_template(request), "method": request.method},
        )
        db.commit()
        raise PasswordChangeRequired(CHANGE_PASSWORD_FIRST)
    return CurrentUser(
        id=user.id,
        email=user.email,
        role=permissions.parse_role(user.role),
        display_name=user.display_name,
        session_id=row.id,
        breakglass=registry.get(row.id),
        client=client_address(request),
        verified=user.verified_at is not None,
        via=via,
        csrf_token=csrf,
        password_must_change=user.password_must_change,
    )


CurrentUserDep = Annotated[CurrentUser, Depends(get_current_user)]


def audit_event(
    db: Session,
    user: CurrentUser | None,
    action: str,
    *,
    outcome: Outcome = "success",
    target_type: str | None = None,
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
    client: str | None = None,
) -> AuditEventRow:
    """Append an audit event by ``user`` (None: anonymous); ``detail`` holds ids, counts and reasons, never PHI."""
    return audit.record(
        db,
        action,
        outcome=outcome,
        actor_id=user.id if user is not None else None,
        actor_role=str(user.role) if user is not None else None,
        client=client or (user.client if user is not None else None),
        target_type=target_type,
        target_id=target_id,
        detail=detail,
    )


def refusal(db: Session, user: CurrentUser, message: str, *, study_id: str, detail: dict[str, Any]) -> PermissionDenied:
    """Audit a refusal on a study (``access.denied``), committed so that it stays in the log although the
    request fails; returns the error to raise."""
    audit_event(db, user, "access.denied", outcome="denied", target_type="study", target_id=study_id, detail=detail)
    db.commit()
    return PermissionDenied(message)


def _access_detail(request: Request, grant: Grant) -> dict[str, Any]:
    return {
        "permission": str(grant.permission),
        "route": route_template(request),
        "method": request.method,
        "params": {k: str(v)[:64] for k, v in request.path_params.items()},
        "breakglass_id": grant.breakglass.breakglass_id if grant.breakglass else None,
    }


def requires(permission: Permission) -> Callable[..., CurrentUser]:
    """A dependency: the CurrentUser when their role (or open break-glass) grants ``permission``, else 403.

    A refusal is audited (``access.denied``); an access through a break-glass is audited
    (``breakglass.access``). Use it as ``user: Annotated[CurrentUser, Depends(requires(P.STUDY_READ))]``.
    """

    def dependency(request: Request, user: CurrentUserDep, db: DbDep) -> CurrentUser:
        try:
            grant = permissions.require(
                user.role,
                permission,
                active=True,
                verified=user.verified,
                breakglass=user.breakglass,
                user_id=user.id,
            )
        except PermissionDenied:
            detail = {"permission": str(permission), "route": route_template(request), "method": request.method}
            audit_event(db, user, "access.denied", outcome="denied", detail=detail)
            db.commit()  # the refusal stays in the log although the request fails
            raise
        if grant.audit_required:
            audit_event(db, user, "breakglass.access", detail=_access_detail(request, grant))
        return user

    dependency.__name__ = f"requires_{permission.name.lower()}"
    return dependency


def authorize_object(db: Session, user: CurrentUser, permission: Permission, obj: Resource) -> Grant:
    """:func:`~neuronav.security.permissions.object_access` for ``user`` on ``obj``; audits break-glass
    access and refusals. A refusal is committed before :class:`PermissionDenied` is raised, so call this
    before the route changes anything (whatever it changed would be committed with the refusal)."""
    try:
        grant = permissions.object_access(
            user.role,
            permission,
            obj,
            user_id=user.id,
            active=True,
            verified=user.verified,
            breakglass=user.breakglass,
        )
    except PermissionDenied:
        detail = {"permission": str(permission), "object": type(obj).__name__}
        audit_event(db, user, "access.denied", outcome="denied", target_id=obj.study_id, detail=detail)
        db.commit()
        raise
    if grant.audit_required:
        audit_event(
            db,
            user,
            "breakglass.access",
            target_type="study",
            target_id=obj.study_id,
            detail={"permission": str(permission), "object": type(obj).__name__, "breakglass_id": _bg_id(grant)},
        )
    return grant


def _bg_id(grant: Grant) -> str | None:
    return grant.breakglass.breakglass_id if grant.breakglass else None


# -- helpers shared by the account routes and the bootstrap ----------------------------------------

_STATES = {"pending": AccountState.PENDING, "active": AccountState.ACTIVE, "disabled": AccountState.DISABLED}
_ROW_STATES = {state: row for row, state in _STATES.items()}


def account_of(user: UserRow) -> Account:
    """The security module's view of a user row (``users.state`` 'pending' is ``pending_verification``)."""
    return Account(
        user_id=user.id,
        username=user.email,
        email=user.email,
        role=permissions.parse_role(user.role),
        state=_STATES[user.state],
        licence_number=user.licence_number,
        verified_by=user.verified_by,
        verified_at=user.verified_at,
        totp_enrolled=user.totp_secret_enc is not None,
    )


def apply_account(user: UserRow, account: Account) -> None:
    """Copy an account transition back into the row."""
    user.state = _ROW_STATES[account.state]
    user.role = str(account.role)
    user.licence_number = account.licence_number
    user.verified_by = account.verified_by
    user.verified_at = account.verified_at


def revoke_sessions(db: Session, user_id: str, *, keep: str | None = None) -> int:
    """Revoke every live session of ``user_id`` (but ``keep``); the number revoked."""
    stmt = update(SessionRow).where(SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(SessionRow.id != keep)
    result = cast(CursorResult[Any], db.execute(stmt.values(revoked_at=datetime.now(UTC))))
    return int(result.rowcount or 0)


def encrypt_totp_secret(store: ObjectStore, secret: str) -> str:
    """A TOTP secret as stored in ``users.totp_secret_enc`` (AES-GCM with the store's field key, column-bound)."""
    return encrypt_field(secret, store.field_key(), TOTP_COLUMN)


def decrypt_totp_secret(store: ObjectStore, token: str) -> str:
    return decrypt_field(token, store.field_key(), TOTP_COLUMN)


class UserOut(BaseModel):
    """A user account as the API shows it (no secrets)."""

    id: str
    email: str
    display_name: str
    role: str
    state: str
    licence_number: str | None
    verified_at: datetime | None
    verified_by: str | None
    totp_enrolled: bool
    created_at: datetime
    password_change_required: bool = False  # a one-time password: only the password change is open


def utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite returns them without a zone)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def user_out(user: UserRow) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        state=user.state,
        licence_number=user.licence_number,
        verified_at=utc(user.verified_at),
        verified_by=user.verified_by,
        totp_enrolled=user.totp_secret_enc is not None,
        password_change_required=bool(user.password_must_change),
        created_at=utc(user.created_at) or user.created_at,
    )


def load_user(db: Session, user_id: str) -> UserRow:
    """The user row, or :class:`NotFoundError`."""
    user = db.get(UserRow, user_id)
    if user is None:
        raise NotFoundError(f"no user {user_id}")
    return user


__all__ = [
    "CHANGE_PASSWORD_FIRST",
    "PASSWORD_CHANGE_ROUTES",
    "BreakGlassDep",
    "BreakGlassRegistry",
    "CurrentUser",
    "CurrentUserDep",
    "DbDep",
    "NotFoundError",
    "SettingsDep",
    "StoreDep",
    "UserOut",
    "account_of",
    "app_settings",
    "apply_account",
    "audit_event",
    "authorize_object",
    "client_address",
    "decrypt_totp_secret",
    "encrypt_totp_secret",
    "get_breakglass_registry",
    "get_current_user",
    "get_db",
    "get_store",
    "load_user",
    "requires",
    "revoke_sessions",
    "route_path",
    "route_template",
    "session_cookie_name",
    "user_out",
    "utc",
]
