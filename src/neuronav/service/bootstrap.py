"""Accounts made from the command line: the first administrator (nobody can verify it through the
API) and the users of ``neuronav serve --demo``.

:func:`create_user` migrates the database, checks what the API would check (e-mail, role, password
policy, a second factor for an active admin), stores the TOTP secret encrypted, and writes the audit
event ``user.create`` by ``system``. An active account counts as verified (``verified_at`` now,
``verified_by`` empty: verified by whoever runs the command).

``must_change_password=True`` (what ``neuronav users create`` and ``neuronav serve --demo`` pass:
their passwords are one-time passwords, printed on a terminal) lets the account do nothing but
change its password after signing in (:mod:`neuronav.service.deps`).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from sqlalchemy import select

from neuronav import audit
from neuronav.config import Settings
from neuronav.db.models import UserRow
from neuronav.db.session import migrate, session_scope
from neuronav.errors import InputError
from neuronav.security import passwords, throttle
from neuronav.security.accounts import normalize_licence
from neuronav.security.errors import AccountStateError
from neuronav.security.permissions import Role, parse_role
from neuronav.service.deps import encrypt_totp_secret
from neuronav.storage.store import ObjectStore

SYSTEM = "system"


def _check_totp_secret(secret: str) -> str:
    cleaned = "".join(secret.split()).upper()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError) as exc:
        raise InputError("the TOTP secret must be base32 (as made by neuronav.security.totp.new_secret)") from exc
    if len(raw) < 10:
        raise InputError("the TOTP secret must hold at least 80 bits")
    return cleaned


def create_user(
    settings: Settings,
    email: str,
    password: str,
    role: Role | str,
    *,
    display_name: str,
    active: bool,
    licence: str | None,
    totp_secret: str | None = None,
    must_change_password: bool = False,
) -> str:
    """Create an account; returns its user id. ``active=False`` makes a pending account (to verify);
    ``must_change_password`` marks ``password`` as a one-time password (changed at first sign-in)."""
    address = throttle.login_key(email)
    if "@" not in address or address.startswith("@") or address.endswith("@") or len(address) > 254:
        raise InputError(f"{email!r} is not an e-mail address")
    try:
        checked_role = parse_role(role)
    except Exception as exc:
        raise AccountStateError(f"unknown role {role!r}; the roles are {', '.join(r.value for r in Role)}") from exc
    passwords.check_password_policy(password, email=address)
    secret = _check_totp_secret(totp_secret) if totp_secret else None
    if active and checked_role == Role.ADMIN and secret is None:
        raise AccountStateError("an active administrator needs a TOTP secret (the second factor is required)")
    licence_number = normalize_licence(licence) if licence else None
    name = " ".join(display_name.split())
    if not name:
        raise InputError("a display name is required")

    migrate(settings.database)
    store = ObjectStore.from_settings(settings)
    password_hash = passwords.hash_password(password)
    now = datetime.now(UTC)
    with session_scope(settings.database) as db:
        if db.scalar(select(UserRow.id).where(UserRow.email == address)) is not None:
            raise AccountStateError(f"an account with the e-mail {address} already exists")
        user = UserRow(
            email=address,
            display_name=name,
            role=str(checked_role),
            state="active" if active else "pending",
            password_hash=password_hash,
            licence_number=licence_number,
            verified_at=now if active else None,
            totp_secret_enc=encrypt_totp_secret(store, secret) if secret else None,
            throttle={},
            created_at=now,
            password_changed_at=now,
            password_must_change=must_change_password,
        )
        db.add(user)
        db.flush()
        audit.record(
            db,
            "user.create",
            actor_id=SYSTEM,
            actor_role=SYSTEM,
            client="cli",
            target_type="user",
            target_id=user.id,
            detail={
                "role": str(checked_role),
                "active": active,
                "totp": secret is not None,
                "one_time_password": must_change_password,
            },
        )
        return user.id


__all__ = ["SYSTEM", "create_user"]
