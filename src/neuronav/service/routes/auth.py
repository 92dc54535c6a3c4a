"""Authentication routes: register, sign in and out, refresh, password change, TOTP enrolment, me.

Thin: each route parses its body, calls :mod:`neuronav.workflow.signin` or
:mod:`neuronav.workflow.accounts` (where the rules, the throttles and the audit events live), and
shapes the answer. Sign-in sets the session token as an HttpOnly, SameSite=Strict cookie (``Secure``
and ``__Host-`` outside development) and returns a short-lived access token and the CSRF token.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from neuronav.security import passwords, tokens
from neuronav.security.permissions import Role
from neuronav.service.deps import (
    AuthFirstRoute,
    BreakGlassDep,
    CurrentUserDep,
    DbDep,
    SettingsDep,
    StoreDep,
    client_address,
    session_cookie_name,
)
from neuronav.workflow import accounts, signin
from neuronav.workflow.accounts import UserOut, load_user, user_out
from neuronav.workflow.breakglass import BreakGlassOut, breakglass_out

router = APIRouter(prefix="/api/auth", tags=["auth"], route_class=AuthFirstRoute)

# what accounts.new_account_fields checks after trimming: one @, neither first nor last, no white space
EMAIL_PATTERN = r"^\s*[^@\s]\S*@\S*[^@\s]\s*$"
REGISTERED = "Registration received. An administrator will verify your professional licence and role."


# -- request and response bodies -------------------------------------------------------------------


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(
        min_length=3, max_length=254, pattern=EMAIL_PATTERN, description="Work e-mail address; the sign-in name."
    )
    password: str = Field(
        min_length=1,
        max_length=passwords.MAX_LENGTH,
        description="At least 12 characters, hard to guess (not common, not made of your name or e-mail): "
        "checked by the password policy, which answers 422 PasswordPolicyError naming every problem.",
    )
    display_name: str = Field(min_length=1, max_length=200)
    role: Role = Field(description="The role requested; the verifying administrator confirms or corrects it.")
    licence_number: str | None = Field(default=None, max_length=100, description="Professional licence number.")


class RegisterOut(BaseModel):
    status: Literal["pending"] = "pending"
    message: str = REGISTERED


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH * 4)
    totp_code: str | None = Field(default=None, max_length=16, description="6-digit code; required when enrolled.")


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires; then call /api/auth/refresh.")
    csrf_token: str | None = Field(description="Send as X-CSRF-Token on unsafe requests authenticated by the cookie.")


class LoginOut(TokenOut):
    csrf_token: str
    user: UserOut
    password_change_required: bool = Field(
        default=False,
        description="Signed in with a one-time password: change it (POST /api/auth/password) before anything else.",
    )


class StatusOut(BaseModel):
    status: str


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH * 4)
    new_password: str = Field(
        min_length=1,
        max_length=passwords.MAX_LENGTH,
        description="At least 12 characters, hard to guess (not common, not made of your name or e-mail): "
        "checked by the password policy, which answers 422 PasswordPolicyError naming every problem.",
    )


class PasswordOut(BaseModel):
    status: Literal["changed"] = "changed"
    sessions_revoked: int


class EnrolOut(BaseModel):
    secret: str = Field(description="Base32 secret, for typing into the authenticator app.")
    otpauth_uri: str = Field(description="The otpauth:// URI (show it as a QR code).")
    enrolment_token: str = Field(description="Send back with a code to /api/auth/totp/confirm.")
    expires_in: int


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enrolment_token: str = Field(min_length=1, max_length=1000)
    code: str = Field(min_length=1, max_length=16)


class MeOut(UserOut):
    session_id: str
    authenticated_by: Literal["bearer", "cookie"]
    csrf_token: str | None
    permissions: list[str]
    breakglass: BreakGlassOut | None


# -- routes --------------------------------------------------------------------------------------


@router.post("/register", status_code=status.HTTP_202_ACCEPTED, response_model=RegisterOut)
def register_route(body: RegisterIn, request: Request, db: DbDep) -> RegisterOut:
    """Register a new account. It stays **pending** (it can do nothing, not even sign in) until an
    administrator verifies the professional's licence number and role. The password must follow the
    policy (at least 12 characters, not common, not containing the e-mail). The reply is the same
    whether or not the e-mail is already registered. At most 10 attempts an hour from one address
    (then 429 with ``Retry-After``)."""
    accounts.register(
        db,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        role=body.role,
        licence_number=body.licence_number,
        client=client_address(request),
    )
    return RegisterOut()


@router.post("/login", response_model=LoginOut)
def login_route(
    body: LoginIn,
    request: Request,
    response: Response,
    db: DbDep,
    settings: SettingsDep,
    store: StoreDep,
) -> LoginOut:
    """Sign in with e-mail, password and (when enrolled, always for administrators) a TOTP code.

    Returns a short-lived access token (send it as ``Authorization: Bearer``), the CSRF token, and
    sets the HttpOnly session cookie. A wrong name or password gives the same 401 either way;
    repeated failures lock the name (and the address) for a while: 429 with ``Retry-After``.

    ``password_change_required: true`` (a one-time password): change the password first; every other
    route answers 403 ``PasswordChangeRequired`` until then."""
    signed = signin.sign_in(
        db,
        settings,
        store,
        email=body.email,
        password=body.password,
        totp_code=body.totp_code,
        client=client_address(request),
    )
    response.set_cookie(
        **tokens.session_cookie(
            signed.session_token, max_age_s=settings.session_hours * 3600, development=settings.development
        )
    )
    return LoginOut(
        access_token=signed.access_token,
        expires_in=signed.expires_in,
        csrf_token=signed.csrf_token,
        user=user_out(signed.user),
        password_change_required=signed.user.password_must_change,
    )


@router.post("/refresh", response_model=TokenOut)
def refresh_route(user: CurrentUserDep, db: DbDep, settings: SettingsDep) -> TokenOut:
    """A fresh access token for the current session (authenticate with the session cookie and CSRF
    token, or with a still-valid access token). Fails once the session is revoked or expired."""
    token, expires_in = signin.refresh(db, settings, user)
    return TokenOut(access_token=token, expires_in=expires_in, csrf_token=user.csrf_token)


@router.post("/logout", response_model=StatusOut)
def logout_route(
    user: CurrentUserDep, db: DbDep, response: Response, settings: SettingsDep, registry: BreakGlassDep
) -> StatusOut:
    """Sign out: revoke the current session (its access tokens stop working at once) and clear the cookie."""
    signin.sign_out(db, user, registry)
    cookie = tokens.session_cookie("", max_age_s=0, development=settings.development)
    response.delete_cookie(
        session_cookie_name(settings), path="/", secure=cookie["secure"], httponly=True, samesite="strict"
    )
    return StatusOut(status="signed out")


@router.post("/password", response_model=PasswordOut)
def password_route(body: PasswordIn, user: CurrentUserDep, db: DbDep) -> PasswordOut:
    """Change your password (the current one is required; the new one must follow the policy and
    differ from it). Every other session of yours is revoked. This ends a one-time password: the
    only route, with sign-out and /me, open before it is changed."""
    revoked = accounts.change_password(db, user, body.current_password, body.new_password)
    return PasswordOut(sessions_revoked=revoked)


@router.post("/totp/enrol", response_model=EnrolOut)
def totp_enrol_route(user: CurrentUserDep, db: DbDep, store: StoreDep) -> EnrolOut:
    """Start enrolling a second factor: returns a new TOTP secret (and its otpauth URI for a QR code)
    and an enrolment token. Nothing changes until /api/auth/totp/confirm receives a valid code."""
    e = signin.start_totp_enrolment(db, store, user)
    return EnrolOut(
        secret=e.secret, otpauth_uri=e.otpauth_uri, enrolment_token=e.enrolment_token, expires_in=e.expires_in
    )


@router.post("/totp/confirm", response_model=StatusOut)
def totp_confirm_route(body: ConfirmIn, user: CurrentUserDep, db: DbDep, store: StoreDep) -> StatusOut:
    """Finish enrolling the second factor with the enrolment token and a current code from the app;
    from now on every sign-in needs a code."""
    signin.confirm_totp_enrolment(db, store, user, body.enrolment_token, body.code)
    return StatusOut(status="enrolled")


@router.get("/me", response_model=MeOut)
def me_route(user: CurrentUserDep, db: DbDep) -> MeOut:
    """The signed-in account: role, permissions, open break-glass, and (for cookie sessions) the CSRF token."""
    bg = user.breakglass
    return MeOut(
        **user_out(load_user(db, user.id)).model_dump(),
        session_id=user.session_id,
        authenticated_by=user.via,
        csrf_token=user.csrf_token,
        permissions=signin.granted_permissions(user),
        breakglass=breakglass_out(bg) if bg is not None else None,
    )


__all__ = ["router"]
