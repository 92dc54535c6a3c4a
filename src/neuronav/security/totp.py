"""TOTP second factor (RFC 6238): 30-second steps, 6 digits, HMAC-SHA1 — what authenticator apps expect.

* :func:`new_secret` — 160 random bits, base32. Store it encrypted at rest (like other secrets of
  the object store); it is shown to the user once, as the QR code of :func:`provisioning_uri`.
* Enrolment: the user proves the app works by entering a code; only then is TOTP marked enrolled
  (and, for an admin, the account can be activated: TOTP is required for admins).
* :func:`verify` accepts the code of the current step or one step either side (clock drift) and
  returns the step it matched. The caller stores it as ``last_used_step``; a code of that step or
  any earlier one is refused afterwards, so a code cannot be used twice (replay protection).
"""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp

from neuronav.security._time import now_utc

DIGITS = 6
INTERVAL_S = 30
WINDOW_STEPS = 1
ISSUER = "NeuroNav"


def new_secret() -> str:
    """A fresh TOTP secret: 32 base32 characters (160 bits)."""
    return pyotp.random_base32()


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL_S)  # SHA-1 is pyotp's (and RFC 6238's) default


def provisioning_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (shown as a QR code at enrolment)."""
    return _totp(secret).provisioning_uri(name=account, issuer_name=issuer)


def current_step(now: datetime | None = None) -> int:
    """The RFC 6238 time step (Unix seconds // 30) at ``now``."""
    return int(now_utc(now).timestamp()) // INTERVAL_S


def code_at(secret: str, step: int) -> str:
    """The code of ``step`` (for tests and enrolment screens)."""
    return _totp(secret).generate_otp(step)


def verify(secret: str, code: str, last_used_step: int | None, *, now: datetime | None = None) -> int | None:
    """The step ``code`` belongs to (current ± 1), or None when it is wrong, malformed or already used.

    Steps at or before ``last_used_step`` are never accepted. Store the returned step as the new
    ``last_used_step``.
    """
    cleaned = "".join(code.split()) if isinstance(code, str) else ""
    if len(cleaned) != DIGITS or not cleaned.isascii() or not cleaned.isdigit():
        return None
    step = current_step(now)
    matched: int | None = None
    for candidate in range(step - WINDOW_STEPS, step + WINDOW_STEPS + 1):
        if last_used_step is not None and candidate <= last_used_step:
            continue
        if hmac.compare_digest(code_at(secret, candidate), cleaned) and matched is None:
            matched = candidate
    return matched


__all__ = ["DIGITS", "INTERVAL_S", "ISSUER", "code_at", "current_step", "new_secret", "provisioning_uri", "verify"]
