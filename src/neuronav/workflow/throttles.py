"""Throttle counters in the database (table ``throttles``): shared by every server process.

:mod:`neuronav.security.throttle` decides on a :class:`~neuronav.security.throttle.ThrottleState`;
this module loads and stores those states for the keys that are not a user row (an existing
account's sign-in counter stays in ``users.throttle``, locked with the row):

==============  =====================================  ===========================================
scope           key                                    policy
==============  =====================================  ===========================================
``account``     a login name that has no account       :data:`~neuronav.security.throttle.ACCOUNT_POLICY`
``address``     the client address (sign-in failures)  :data:`~neuronav.security.throttle.ADDRESS_POLICY`
``registration``  the client address (registrations)   :data:`~neuronav.security.throttle.REGISTRATION_POLICY`
``rate:upload``   the user id (uploads)                 :data:`~neuronav.security.throttle.UPLOAD_RATE`
``rate:analysis`` the user id (analyses started)        :data:`~neuronav.security.throttle.ANALYSIS_RATE`
``rate:export``   the user id (report exports)          :data:`~neuronav.security.throttle.EXPORT_RATE`
``rate:image``    the user id (viewer image reads)      :data:`~neuronav.security.throttle.IMAGE_RATE`
==============  =====================================  ===========================================

:func:`spend` is the one place a rate-limited action is counted: the workflow function of the action
calls it first (uploads, analysis starts, report exports, viewer images), for every edge.

Keys are stored as SHA-256 digests of scope and key (a login name typed by mistake can be a
password). Reading (:func:`load`) takes no lock: a decision may be a moment stale. Counting
(:func:`update`) locks the row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions already
take the write lock at BEGIN), re-reads it and applies the change to the fresh state, so concurrent
failures from several processes are all counted. A concurrent first insert of the same key is
caught (unique key) and retried as an update. A state that holds nothing is deleted, and every
update prunes rows idle for a day that hold no lock (the policies forget them after a day anyway).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neuronav.db.models import ThrottleRow
from neuronav.security import throttle
from neuronav.security.access import Actor
from neuronav.security.errors import RateLimited
from neuronav.security.throttle import RateLimit, RateScope, ThrottleState
from neuronav.workflow.access import audit_event

Scope = Literal["account", "address", "registration"] | RateScope
STALE_AFTER = timedelta(hours=24)  # the longest forget_after / max_lockout of the policies


def key_digest(scope: Scope, key: str) -> str:
    return hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()


def _state(row: ThrottleRow | None) -> ThrottleState:
    if row is None:
        return ThrottleState()
    return ThrottleState(
        failures=row.failures,
        window_start=row.window_start,
        locked_until=row.locked_until,
        lockouts=row.lockouts,
        last_failure=row.last_failure,
    )


def load(db: Session, scope: Scope, key: str) -> ThrottleState:
    """The stored state of ``key`` (a fresh state when there is none)."""
    return _state(db.get(ThrottleRow, (scope, key_digest(scope, key))))


def _locked_row(db: Session, scope: Scope, digest: str) -> ThrottleRow:
    stmt = (
        select(ThrottleRow)
        .where(ThrottleRow.scope == scope, ThrottleRow.key_digest == digest)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = db.scalar(stmt)
    if row is not None:
        return row
    try:
        with db.begin_nested():
            row = ThrottleRow(scope=scope, key_digest=digest, failures=0, lockouts=0)
            db.add(row)
            db.flush()
        return row
    except IntegrityError:  # another process inserted it first: take theirs, locked
        found = db.scalar(stmt)
        if found is None:
            raise
        return found


def update(
    db: Session,
    scope: Scope,
    key: str,
    change: Callable[[ThrottleState], ThrottleState],
    *,
    now: datetime | None = None,
) -> ThrottleState:
    """Apply ``change`` to the current state of ``key`` under a row lock and store the result."""
    row = _locked_row(db, scope, key_digest(scope, key))
    new = change(_state(row))
    if new == ThrottleState():
        db.delete(row)
    else:
        row.failures = new.failures
        row.window_start = new.window_start
        row.locked_until = new.locked_until
        row.lockouts = new.lockouts
        row.last_failure = new.last_failure
    db.flush()
    prune(db, now=now)
    return new


def prune(db: Session, *, now: datetime | None = None) -> int:
    """Delete the rows idle for :data:`STALE_AFTER` that hold no lock; the number deleted."""
    t = now or datetime.now(UTC)
    stmt = delete(ThrottleRow).where(
        ThrottleRow.last_failure < t - STALE_AFTER,
        or_(ThrottleRow.locked_until.is_(None), ThrottleRow.locked_until < t),
    )
    result = db.execute(stmt.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def spend(db: Session, actor: Actor, limit: RateLimit, *, now: datetime | None = None) -> None:
    """Count one use of a rate-limited action by ``actor`` (committed, so a request that fails later still
    counts), or refuse it: :class:`RateLimited` (429 with Retry-After), audited (``rate.limited``)."""
    t = now or datetime.now(UTC)
    decision = throttle.check_rate(load(db, limit.scope, actor.id), limit, now=t)
    if not decision.allowed:
        detail = {"limit": limit.scope, "retry_after_s": decision.retry_after_s}
        audit_event(db, actor, "rate.limited", outcome="denied", detail=detail)
        db.commit()
        raise RateLimited(decision.message, decision.retry_after_s)
    update(db, limit.scope, actor.id, lambda s: throttle.record_use(s, limit, now=t), now=t)
    db.commit()


__all__ = ["STALE_AFTER", "Scope", "key_digest", "load", "prune", "spend", "update"]
