"""Account states and the professional verification that activates an account (pure logic).

States and transitions::

    pending_verification --activate (admin verified licence + role)--> active
    active               --disable (with a reason)------------------> disabled
    pending_verification --disable (registration rejected)----------> disabled
    disabled             --enable-----------------------------------> active (pending if never verified)

* A new account (self-registration or created by an admin) is ``pending_verification`` and can do
  nothing (:func:`neuronav.security.permissions.require` denies everything) until an admin —
  holding ``user:verify``, and never for their own account — checks the professional's licence or
  registration number and role: :func:`verify_professional`, applied by :func:`activate`.
* The second factor is required for admins: an account is activated (or re-enabled, or given) the
  admin role only once it has TOTP enrolled.
* :func:`disable`, :func:`change_role` and every password change must be followed by revoking all
  of the user's sessions (the service does that; see :mod:`neuronav.security.tokens`).
* The very first admin cannot be verified by another: the service creates it from the command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from neuronav.security._time import now_utc
from neuronav.security.errors import AccountStateError, PermissionDenied
from neuronav.security.permissions import Permission, Role, parse_role, require


class AccountState(StrEnum):
    PENDING = "pending_verification"
    ACTIVE = "active"
    DISABLED = "disabled"


LICENCE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9 ./-]{1,62}[A-Z0-9]$")


@dataclass(frozen=True)
class Account:
    """The security-relevant part of a user row."""

    user_id: str
    username: str
    email: str
    role: Role  # requested at registration, confirmed by the verifying admin
    state: AccountState = AccountState.PENDING
    licence_number: str | None = None
    verified_by: str | None = None
    verified_at: datetime | None = None
    totp_enrolled: bool = False
    disabled_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.state == AccountState.ACTIVE

    @property
    def verified(self) -> bool:
        return self.verified_at is not None and self.licence_number is not None


def new_account(*, user_id: str, username: str, email: str, role: Role | str) -> Account:
    """A freshly registered account: pending verification, no permissions."""
    if not username.strip() or "@" not in email:
        raise AccountStateError("an account needs a user name and an e-mail address")
    return Account(user_id=user_id, username=username.strip(), email=email.strip(), role=_role(role))


def _role(role: Role | str) -> Role:
    try:
        return parse_role(role)
    except PermissionDenied as exc:
        allowed = ", ".join(r.value for r in Role)
        raise AccountStateError(f"unknown role {role!r}; the roles are {allowed}") from exc


def normalize_licence(licence_number: str) -> str:
    """A licence/registration number trimmed, blanks collapsed, upper case; :class:`AccountStateError` when unusable."""
    text = " ".join(licence_number.split()).upper()
    if not text:
        raise AccountStateError("the professional's licence or registration number is required")
    if not LICENCE_PATTERN.match(text):
        raise AccountStateError(
            "a licence or registration number has 3 to 64 characters: letters, digits, spaces, '.', '/' or '-'"
        )
    return text


def verify_professional(licence_number: str, role: Role | str, *, totp_enrolled: bool) -> tuple[str, Role]:
    """Check what the verifying admin entered: ``(normalised licence number, role)``.

    The licence number must be non-empty and well formed, the role one of :class:`Role`, and an
    admin must have TOTP enrolled (the second factor is required for admins).
    """
    licence = normalize_licence(licence_number)
    checked = _role(role)
    if checked == Role.ADMIN and not totp_enrolled:
        raise AccountStateError("an admin account needs a second factor (TOTP) enrolled before it can be activated")
    return licence, checked


def _require_verifier(verifier_id: str, verifier_role: Role | str, account: Account, permission: Permission) -> None:
    require(verifier_role, permission, active=True, verified=True)
    if verifier_id == account.user_id:
        raise PermissionDenied("an administrator cannot verify, change or disable their own account")


def activate(
    account: Account,
    *,
    licence_number: str,
    role: Role | str,
    verifier_id: str,
    verifier_role: Role | str,
    now: datetime | None = None,
) -> Account:
    """The account after an admin verified the professional: active, licence and role recorded.

    ``verifier_role`` is the role of an active, verified account (the service checks that); it must
    hold ``user:verify`` and may not be the account itself.
    """
    _require_verifier(verifier_id, verifier_role, account, Permission.USER_VERIFY)
    if account.state != AccountState.PENDING:
        raise AccountStateError(f"account {account.username} is {account.state.value}, not pending verification")
    licence, checked = verify_professional(licence_number, role, totp_enrolled=account.totp_enrolled)
    return replace(
        account,
        state=AccountState.ACTIVE,
        role=checked,
        licence_number=licence,
        verified_by=verifier_id,
        verified_at=now_utc(now),
        disabled_reason=None,
    )


def disable(account: Account, *, reason: str, by_id: str, by_role: Role | str) -> Account:
    """The account disabled (or a pending registration rejected). Revoke all its sessions afterwards."""
    _require_verifier(by_id, by_role, account, Permission.USER_MANAGE)
    if account.state == AccountState.DISABLED:
        raise AccountStateError(f"account {account.username} is already disabled")
    if not reason.strip():
        raise AccountStateError("disabling an account needs a reason")
    return replace(account, state=AccountState.DISABLED, disabled_reason=reason.strip())


def enable(account: Account, *, by_id: str, by_role: Role | str) -> Account:
    """A disabled account back: active when it was verified before (admins: with TOTP), else pending."""
    _require_verifier(by_id, by_role, account, Permission.USER_MANAGE)
    if account.state != AccountState.DISABLED:
        raise AccountStateError(f"account {account.username} is not disabled")
    if not account.verified:
        return replace(account, state=AccountState.PENDING, disabled_reason=None)
    if account.role == Role.ADMIN and not account.totp_enrolled:
        raise AccountStateError("an admin account needs a second factor (TOTP) enrolled before it can be enabled")
    return replace(account, state=AccountState.ACTIVE, disabled_reason=None)


def change_role(account: Account, role: Role | str, *, by_id: str, by_role: Role | str) -> Account:
    """The account with another role (admins need TOTP). Revoke all its sessions afterwards."""
    _require_verifier(by_id, by_role, account, Permission.USER_MANAGE)
    checked = _role(role)
    if checked == Role.ADMIN and not account.totp_enrolled:
        raise AccountStateError("an admin account needs a second factor (TOTP) enrolled first")
    return replace(account, role=checked)


def can_sign_in(account: Account) -> bool:
    """True for an active, verified account whose second factor is in place when its role needs one."""
    return account.active and account.verified and (account.role != Role.ADMIN or account.totp_enrolled)


__all__ = [
    "Account",
    "AccountState",
    "activate",
    "can_sign_in",
    "change_role",
    "disable",
    "enable",
    "new_account",
    "normalize_licence",
    "verify_professional",
]
