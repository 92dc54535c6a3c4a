"""Session tokens (digest only stored), signed access tokens bound to a live session, CSRF bound to the session."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from neuronav.errors import ConfigError
from neuronav.security.errors import CsrfError, InvalidToken, PermissionDenied
from neuronav.security.tokens import (
    AccessClaims,
    SessionRecord,
    check_csrf,
    csrf_token,
    ensure_session_alive,
    ensure_session_token,
    issue_access_token,
    new_session_token,
    session_cookie,
    session_expiry,
    token_digest,
    verify_access_token,
)

SECRET = "k" * 48
OTHER = "z" * 48
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _token(**kw: object) -> str:
    args: dict[str, object] = {"user_id": "u1", "session_id": "s1", "role": "radiologist", "secret": SECRET, "now": T0}
    args.update(kw)
    return issue_access_token(**args)  # type: ignore[arg-type]


def test_session_tokens_are_random_and_only_their_digest_is_stored() -> None:
    a, b = new_session_token(), new_session_token()
    assert a != b and len(a) >= 43
    digest = token_digest(a)
    assert len(digest) == 64 and a not in digest and digest == token_digest(a) != token_digest(b)


def test_access_token_round_trip() -> None:
    claims = verify_access_token(_token(), secret=SECRET, now=T0 + timedelta(minutes=14))
    assert claims == AccessClaims("u1", "s1", "radiologist", T0, T0 + timedelta(minutes=15))


def test_access_token_expires() -> None:
    token = _token(minutes=15)
    verify_access_token(token, secret=SECRET, now=T0 + timedelta(minutes=14, seconds=59))
    with pytest.raises(InvalidToken):
        verify_access_token(token, secret=SECRET, now=T0 + timedelta(minutes=15))


def test_access_token_from_the_future_is_refused() -> None:
    with pytest.raises(InvalidToken):
        verify_access_token(_token(), secret=SECRET, now=T0 - timedelta(minutes=5))


def test_access_token_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(InvalidToken):
        verify_access_token(_token(secret=OTHER), secret=SECRET, now=T0)


def _reencode(payload: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


def test_tampered_payload_is_refused() -> None:
    version, body, mac = _token().split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for change in ({"role": "admin"}, {"sub": "u2"}, {"exp": payload["exp"] + 3600}, {"sid": "s2"}):
        forged = f"{version}.{_reencode({**payload, **change})}.{mac}"
        with pytest.raises(InvalidToken):
            verify_access_token(forged, secret=SECRET, now=T0)


@pytest.mark.parametrize(
    "token",
    ["", "v1", "v1..", "v2.abc.def", "v1.abc", "v1.a.b.c", "v1.!!!.???", "v1.é.é", "x" * 5000, "Bearer v1.a.b"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_access_token(token, secret=SECRET, now=T0)


def test_mac_truncated_or_flipped_is_refused() -> None:
    token = _token()
    with pytest.raises(InvalidToken):
        verify_access_token(token[:-2], secret=SECRET, now=T0)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(InvalidToken):
        verify_access_token(flipped, secret=SECRET, now=T0)


def test_short_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="NEURONAV_SECRET_KEY"):
        issue_access_token(user_id="u1", session_id="s1", role="admin", secret="short")
    with pytest.raises(ConfigError):
        csrf_token("t", secret="")


def test_issue_refuses_empty_claims_and_bad_lifetime() -> None:
    with pytest.raises(ValueError):
        _token(session_id="")
    with pytest.raises(ValueError):
        _token(minutes=0)
    with pytest.raises(ValueError, match="timezone"):
        _token(now=datetime(2025, 1, 1))


def _alive(session: SessionRecord | None, *, role: str = "radiologist", active: bool = True, at: datetime = T0) -> None:
    claims = verify_access_token(_token(), secret=SECRET, now=T0)
    ensure_session_alive(claims, session, current_role=role, account_active=active, now=at)


def test_valid_token_of_a_live_session_passes() -> None:
    _alive(SessionRecord("s1", "u1", expires_at=T0 + timedelta(hours=8)))


@pytest.mark.parametrize(
    ("session", "role", "active"),
    [
        (None, "radiologist", True),  # session deleted (logout)
        (SessionRecord("s1", "u1", T0 + timedelta(hours=8), revoked_at=T0), "radiologist", True),  # revoked
        (SessionRecord("s1", "u1", T0 - timedelta(seconds=1)), "radiologist", True),  # expired session
        (SessionRecord("s2", "u1", T0 + timedelta(hours=8)), "radiologist", True),  # another session
        (SessionRecord("s1", "u2", T0 + timedelta(hours=8)), "radiologist", True),  # another user's session
        (SessionRecord("s1", "u1", T0 + timedelta(hours=8)), "neurologist", True),  # role changed since
        (SessionRecord("s1", "u1", T0 + timedelta(hours=8)), "radiologist", False),  # account disabled
    ],
)
def test_logout_revocation_and_changes_reject_a_still_signed_token(
    session: SessionRecord | None, role: str, active: bool
) -> None:
    with pytest.raises(InvalidToken):
        _alive(session, role=role, active=active)


def test_naive_database_times_are_read_as_utc() -> None:
    _alive(SessionRecord("s1", "u1", expires_at=datetime(2025, 3, 1, 10, 0)))
    with pytest.raises(InvalidToken):
        _alive(SessionRecord("s1", "u1", expires_at=datetime(2025, 3, 1, 8, 59)))


def test_session_token_check() -> None:
    token = new_session_token()
    record = SessionRecord("s1", "u1", session_expiry(T0, hours=8))
    ensure_session_token(token, record, token_digest(token), account_active=True, now=T0)
    with pytest.raises(InvalidToken):
        ensure_session_token(token, record, token_digest("other"), account_active=True, now=T0)
    with pytest.raises(InvalidToken):
        ensure_session_token(token, record, token_digest(token), account_active=True, now=T0 + timedelta(hours=8))
    with pytest.raises(InvalidToken):
        ensure_session_token(token, record, token_digest(token), account_active=False, now=T0)
    with pytest.raises(InvalidToken):
        ensure_session_token(token, None, token_digest(token), account_active=True, now=T0)


def test_session_cookie_is_httponly_samesite_and_secure_in_production() -> None:
    prod = session_cookie("tok", max_age_s=3600, development=False)
    assert prod["httponly"] is True and prod["samesite"] == "strict" and prod["secure"] is True
    assert prod["key"].startswith("__Host-") and prod["path"] == "/" and "domain" not in prod
    dev = session_cookie("tok", max_age_s=3600, development=True)
    assert dev["httponly"] is True and dev["samesite"] == "strict" and dev["secure"] is False


def test_csrf_token_is_bound_to_its_session_and_secret() -> None:
    a, b = new_session_token(), new_session_token()
    token_a = csrf_token(a, secret=SECRET)
    assert token_a == csrf_token(a, secret=SECRET) != csrf_token(b, secret=SECRET)
    assert token_a != csrf_token(a, secret=OTHER)
    check_csrf(a, token_a, secret=SECRET)
    for presented in (csrf_token(b, secret=SECRET), csrf_token(a, secret=OTHER), "", None, token_a[:-1], "ü" * 43):
        with pytest.raises(CsrfError):
            check_csrf(a, presented, secret=SECRET, method="POST")


def test_csrf_is_a_permission_error_and_safe_methods_need_no_token() -> None:
    a = new_session_token()
    for method in ("GET", "head", "OPTIONS"):
        check_csrf(a, None, secret=SECRET, method=method)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        with pytest.raises(PermissionDenied):
            check_csrf(a, None, secret=SECRET, method=method)
