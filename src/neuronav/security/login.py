"""One sign-in attempt, decided in one place (pure: the service loads and stores the records).

:func:`authenticate` puts the pieces together in the order that leaks nothing:

1. throttles (account key = the login name as typed, so unknown names lock like real ones; and the
   client address) — a locked attempt is refused before any password work;
2. the password — for an unknown name a dummy argon2 verification takes the same time, and the
   message is the same :data:`BAD_CREDENTIALS` for an unknown name and a wrong password;
3. the TOTP code when the account has one enrolled (missing: :class:`SecondFactorRequired`,
   not counted as a failure; wrong or replayed: a failure);
4. only then the account state (pending verification, disabled, admin without a second factor):
   told only to someone who proved the password.

The service stores ``result.account_throttle`` / ``result.address_throttle`` (always),
``result.new_password_hash`` and ``result.totp_step`` (when set), audits ``result.audit``, and then
either raises ``result.error`` or opens a session (:mod:`neuronav.security.tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from neuronav.security import passwords, throttle, totp
from neuronav.security._time import now_utc
from neuronav.security.accounts import AccountState
from neuronav.security.errors import (
    AccountLocked,
    AuthError,
    PermissionDenied,
    SecondFactorRequired,
    SecurityError,
)
from neuronav.security.permissions import Role
from neuronav.security.throttle import ThrottleState

BAD_CREDENTIALS = "Invalid user name or password."
BAD_CODE = "The verification code is wrong or has already been used."
CODE_REQUIRED = "Enter the 6-digit code from your authenticator app."


@dataclass(frozen=True)
class LoginAccount:
    """What sign-in needs from the user row."""

    user_id: str
    role: Role
    state: AccountState
    password_hash: str
    totp_secret: str | None = None  # decrypted; None when no second factor is enrolled
    totp_last_step: int | None = None


@dataclass(frozen=True)
class LoginResult:
    user_id: str | None  # set only on success
    account_throttle: ThrottleState
    address_throttle: ThrottleState
    audit: str  # for the audit log only: ok, locked, unknown account, bad password, bad code, …
    error: SecurityError | None = None
    new_password_hash: str | None = None  # store when set (parameters upgraded)
    totp_step: int | None = None  # store as totp_last_step when set

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error


def authenticate(
    account: LoginAccount | None,
    password: str,
    totp_code: str | None,
    *,
    account_throttle: ThrottleState,
    address_throttle: ThrottleState,
    now: datetime | None = None,
) -> LoginResult:
    """Decide one sign-in attempt; see the module docstring for the order and what to store."""
    t = now_utc(now)
    decision = throttle.check_all(account_throttle, address_throttle, now=t)
    if not decision.allowed:
        return LoginResult(
            None,
            account_throttle,
            address_throttle,
            f"locked ({decision.reason})",
            AccountLocked(decision.message, decision.retry_after_s),
        )

    def failure(audit: str, message: str) -> LoginResult:
        return LoginResult(
            None,
            throttle.record_failure(account_throttle, throttle.ACCOUNT_POLICY, now=t),
            throttle.record_failure(address_throttle, throttle.ADDRESS_POLICY, now=t),
            audit,
            AuthError(message),
        )

    if account is None:
        passwords.verify_dummy(password)
        return failure("unknown account", BAD_CREDENTIALS)
    matches, new_hash = passwords.verify_and_update(account.password_hash, password)
    if not matches:
        return failure("bad password", BAD_CREDENTIALS)

    step: int | None = None
    if account.totp_secret is not None:
        if not totp_code:
            return LoginResult(
                None, account_throttle, address_throttle, "second factor required", SecondFactorRequired(CODE_REQUIRED)
            )
        step = totp.verify(account.totp_secret, totp_code, account.totp_last_step, now=t)
        if step is None:
            return failure("bad code", BAD_CODE)

    reason, refusal = "", None
    if account.state == AccountState.PENDING:
        reason, refusal = "refused: pending verification", "This account is waiting for an administrator to verify it."
    elif account.state == AccountState.DISABLED:
        reason, refusal = "refused: disabled", "This account is disabled; contact an administrator."
    elif account.role == Role.ADMIN and account.totp_secret is None:
        reason = "refused: admin without second factor"
        refusal = "Administrators must sign in with a second factor; ask another administrator to set it up."
    if refusal is not None:
        return LoginResult(
            None,
            account_throttle,
            address_throttle,
            reason,
            PermissionDenied(refusal),
            new_password_hash=new_hash,
            totp_step=step,
        )

    return LoginResult(
        account.user_id,
        throttle.record_success(account_throttle, throttle.ACCOUNT_POLICY, now=t),
        throttle.record_success(address_throttle, throttle.ADDRESS_POLICY, now=t),
        "ok",
        None,
        new_password_hash=new_hash,
        totp_step=step,
    )


__all__ = ["BAD_CODE", "BAD_CREDENTIALS", "CODE_REQUIRED", "LoginAccount", "LoginResult", "authenticate"]
