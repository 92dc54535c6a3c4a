"""Login throttling and soft lockout: pure logic over a small state record and an injected clock.

Two counters guard sign-in, each a :class:`ThrottleState` the database stores (one row per key):

* per **account**, keyed by the normalised login name as typed (:func:`login_key`) — *whether or not
  such an account exists*, so a lockout appears for unknown names exactly as for real ones and
  reveals nothing. 5 failures within 15 minutes (counted from the first) lock the name for 15
  minutes; each further lockout before a success doubles it (30, 60, … capped at 24 h). The
  escalation is forgotten after 24 h without failures. A success resets everything.
* per **client address**: 20 failures within 15 minutes lock the address for 15 minutes (not
  escalating). A success does *not* reset it, so an attacker holding one account cannot launder
  an address's failures.

The lockout is *soft*: it ends by itself (no admin needed) and refuses even a correct password
while it lasts. Flow for the service::

    decision = check_all(account_state, address_state, now=now)
    if not decision.allowed: raise AccountLocked(decision.message, decision.retry_after_s)
    ... verify password (and TOTP) ...
    on failure: record_failure(account_state, ACCOUNT_POLICY), record_failure(address_state, ADDRESS_POLICY)
    on success: record_success(account_state, ACCOUNT_POLICY)    # address state left as it is

Every refusal shows the same :data:`LOCKED_MESSAGE` text (with the wait); ``reason`` says for the
audit log whether the account or the address tripped.

A third counter, per **client address**, limits registrations (:data:`REGISTRATION_POLICY`): every
registration attempt counts (each one costs an argon2 hash); the 10th within an hour locks the
address out of registering for an hour (:func:`check_registration`, :data:`REGISTRATION_MESSAGE`).

Per-**user** rate limits (:data:`RATE_LIMITS`) bound the expensive actions of a signed-in user:
uploads, analyses started (forced or not), report exports and viewer image reads. Each is a fixed
window counted from the first use: the ``max_uses``-th use within ``window`` is the last; further
ones are refused (429, ``Retry-After``) until the window ends (:func:`check_rate`,
:func:`record_use`, the same :class:`ThrottleState` record: ``failures`` counts the uses).

The service stores every state in the database (``users.throttle`` for an existing account, the
``throttles`` table for the rest: :mod:`neuronav.workflow.throttles`), so all server processes share them.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from neuronav.security._time import aware, now_utc

LOCKED_MESSAGE = "Too many failed sign-in attempts. Try again in {wait}."
REGISTRATION_MESSAGE = "Too many registrations from this address. Try again in {wait}."
RATE_MESSAGE = "Too many {what} in {window}. Try again in {wait}."


@dataclass(frozen=True)
class ThrottlePolicy:
    """Limits for one kind of key."""

    scope: Literal["account", "address", "registration"]
    max_failures: int
    window: timedelta
    lockout: timedelta
    escalate: bool  # double the lockout for each repeat
    max_lockout: timedelta
    forget_after: timedelta  # escalation forgotten after this long without failures
    reset_on_success: bool


ACCOUNT_POLICY = ThrottlePolicy(
    scope="account",
    max_failures=5,
    window=timedelta(minutes=15),
    lockout=timedelta(minutes=15),
    escalate=True,
    max_lockout=timedelta(hours=24),
    forget_after=timedelta(hours=24),
    reset_on_success=True,
)

ADDRESS_POLICY = ThrottlePolicy(
    scope="address",
    max_failures=20,
    window=timedelta(minutes=15),
    lockout=timedelta(minutes=15),
    escalate=False,
    max_lockout=timedelta(minutes=15),
    forget_after=timedelta(hours=24),
    reset_on_success=False,
)


REGISTRATION_POLICY = ThrottlePolicy(
    scope="registration",
    max_failures=10,  # here: registration attempts, successful or not
    window=timedelta(hours=1),
    lockout=timedelta(hours=1),
    escalate=False,
    max_lockout=timedelta(hours=1),
    forget_after=timedelta(hours=24),
    reset_on_success=False,
)


RateScope = Literal["rate:upload", "rate:analysis", "rate:export", "rate:image"]


@dataclass(frozen=True)
class RateLimit:
    """At most ``max_uses`` of an action per user within ``window`` (a fixed window from the first use)."""

    scope: RateScope
    max_uses: int
    window: timedelta
    what: str  # for the message: "uploads", "analyses started", …


UPLOAD_RATE = RateLimit("rate:upload", 60, timedelta(hours=1), "uploads")
ANALYSIS_RATE = RateLimit("rate:analysis", 30, timedelta(hours=1), "analyses started")
EXPORT_RATE = RateLimit("rate:export", 120, timedelta(hours=1), "report exports")
IMAGE_RATE = RateLimit("rate:image", 600, timedelta(hours=1), "image reads")
RATE_LIMITS = {limit.scope: limit for limit in (UPLOAD_RATE, ANALYSIS_RATE, EXPORT_RATE, IMAGE_RATE)}


@dataclass(frozen=True)
class ThrottleState:
    """The stored record of one key. A new key starts from ``ThrottleState()``."""

    failures: int = 0  # failures in the current window
    window_start: datetime | None = None  # first failure of the current window
    locked_until: datetime | None = None
    lockouts: int = 0  # lockouts since the last success (escalation)
    last_failure: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """Whether a sign-in attempt may proceed; when not, how long to wait and a message safe to show."""

    allowed: bool
    retry_after_s: int = 0
    reason: str = ""  # for the audit log: "account locked" / "address locked"
    message: str = ""  # for the user: identical whether or not the account exists


ALLOWED = Decision(allowed=True)


def login_key(login: str) -> str:
    """The account-throttle key of a typed login name: NFKC, case-folded, trimmed."""
    return unicodedata.normalize("NFKC", login).strip().casefold()


def _wait_text(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes} minutes"
    return f"{math.ceil(minutes / 60)} hours"


def _locked(seconds: int, reason: str, template: str = LOCKED_MESSAGE) -> Decision:
    seconds = max(1, seconds)
    return Decision(False, seconds, reason, template.format(wait=_wait_text(seconds)))


def check(state: ThrottleState, policy: ThrottlePolicy, *, now: datetime | None = None) -> Decision:
    """Allowed, or locked with the seconds left (rounded up)."""
    t = now_utc(now)
    until = aware(state.locked_until)
    if until is not None and t < until:
        return _locked(math.ceil((until - t).total_seconds()), f"{policy.scope} locked")
    return ALLOWED


def check_registration(state: ThrottleState, *, now: datetime | None = None) -> Decision:
    """Whether a client address may register again (:data:`REGISTRATION_POLICY`); the message names registrations."""
    decision = check(state, REGISTRATION_POLICY, now=now)
    if decision.allowed:
        return decision
    return _locked(decision.retry_after_s, decision.reason, REGISTRATION_MESSAGE)


def _window_text(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "an hour" if hours == 1 else f"{hours} hours"
    return _wait_text(seconds)


def check_rate(state: ThrottleState, limit: RateLimit, *, now: datetime | None = None) -> Decision:
    """Whether one more use is allowed; when not, the seconds until the window ends."""
    t = now_utc(now)
    start = aware(state.window_start)
    if start is None or t - start >= limit.window or state.failures < limit.max_uses:
        return ALLOWED
    seconds = max(1, math.ceil((start + limit.window - t).total_seconds()))
    message = RATE_MESSAGE.format(what=limit.what, window=_window_text(limit.window), wait=_wait_text(seconds))
    return Decision(False, seconds, f"{limit.scope} limit", message)


def record_use(state: ThrottleState, limit: RateLimit, *, now: datetime | None = None) -> ThrottleState:
    """The state after one use (a new window when the last one has ended)."""
    t = now_utc(now)
    start = aware(state.window_start)
    if start is None or t - start >= limit.window:
        return ThrottleState(failures=1, window_start=t, last_failure=t)
    return replace(state, failures=state.failures + 1, last_failure=t)


def check_all(account: ThrottleState, address: ThrottleState, *, now: datetime | None = None) -> Decision:
    """The stricter of the account and address decisions (the longer wait)."""
    decisions = [check(account, ACCOUNT_POLICY, now=now), check(address, ADDRESS_POLICY, now=now)]
    refused = [d for d in decisions if not d.allowed]
    return max(refused, key=lambda d: d.retry_after_s) if refused else ALLOWED


def lockout_duration(policy: ThrottlePolicy, lockouts_before: int) -> timedelta:
    """How long the next lockout lasts after ``lockouts_before`` earlier ones (escalating, capped)."""
    if not policy.escalate:
        return policy.lockout
    factor = 1 << min(lockouts_before, 32)
    return min(policy.lockout * factor, policy.max_lockout)


def record_failure(state: ThrottleState, policy: ThrottlePolicy, *, now: datetime | None = None) -> ThrottleState:
    """The state after one failed attempt; locks the key when the window's limit is reached."""
    t = now_utc(now)
    last = aware(state.last_failure)
    lockouts = state.lockouts
    if last is not None and t - last >= policy.forget_after:
        lockouts = 0
    start = aware(state.window_start)
    failures = state.failures
    if start is None or t - start >= policy.window:
        start, failures = t, 0
    failures += 1
    if failures >= policy.max_failures:
        until = t + lockout_duration(policy, lockouts)
        return ThrottleState(failures=0, window_start=None, locked_until=until, lockouts=lockouts + 1, last_failure=t)
    return replace(state, failures=failures, window_start=start, lockouts=lockouts, last_failure=t)


def record_success(state: ThrottleState, policy: ThrottlePolicy, *, now: datetime | None = None) -> ThrottleState:
    """The state after a successful sign-in: cleared for accounts, unchanged for addresses."""
    now_utc(now)
    return ThrottleState() if policy.reset_on_success else state


__all__ = [
    "ACCOUNT_POLICY",
    "ADDRESS_POLICY",
    "ALLOWED",
    "ANALYSIS_RATE",
    "EXPORT_RATE",
    "IMAGE_RATE",
    "LOCKED_MESSAGE",
    "RATE_LIMITS",
    "RATE_MESSAGE",
    "REGISTRATION_MESSAGE",
    "REGISTRATION_POLICY",
    "UPLOAD_RATE",
    "Decision",
    "RateLimit",
    "RateScope",
    "ThrottlePolicy",
    "ThrottleState",
    "check",
    "check_all",
    "check_rate",
    "check_registration",
    "lockout_duration",
    "login_key",
    "record_failure",
    "record_success",
    "record_use",
]
