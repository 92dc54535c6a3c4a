"""The one clock of the security modules: aware UTC datetimes, injectable in every public function."""

from __future__ import annotations

from datetime import UTC, datetime


def now_utc(now: datetime | None = None) -> datetime:
    """``now`` when given (it must carry a time zone), else the current UTC time."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("security times must be timezone-aware (use datetime.now(UTC))")
    return now


def aware(value: datetime | None) -> datetime | None:
    """A stored time as an aware datetime (a naive one, as some databases return, is read as UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
