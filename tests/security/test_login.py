"""One sign-in attempt end to end: same answer for unknown names and wrong passwords, lockout, TOTP, states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from neuronav.security import totp
from neuronav.security.accounts import AccountState
from neuronav.security.errors import AccountLocked, AuthError, PermissionDenied, SecondFactorRequired
from neuronav.security.login import BAD_CREDENTIALS, LoginAccount, LoginResult, authenticate
from neuronav.security.passwords import hash_password
from neuronav.security.permissions import Role
from neuronav.security.throttle import ThrottleState

T0 = datetime(2025, 3, 1, 9, 0, 10, tzinfo=UTC)
PASSWORD = "violet-harbour-quietly-47"


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


def account(password_hash: str, **kw: object) -> LoginAccount:
    fields: dict[str, object] = {
        "user_id": "u1",
        "role": Role.RADIOLOGIST,
        "state": AccountState.ACTIVE,
        "password_hash": password_hash,
    }
    fields.update(kw)
    return LoginAccount(**fields)  # type: ignore[arg-type]


def attempt(acc: LoginAccount | None, password: str, code: str | None = None, **kw: object) -> LoginResult:
    states: dict[str, object] = {"account_throttle": ThrottleState(), "address_throttle": ThrottleState(), "now": T0}
    states.update(kw)
    return authenticate(acc, password, code, **states)  # type: ignore[arg-type]


def test_right_password_signs_in(password_hash: str) -> None:
    result = attempt(account(password_hash), PASSWORD)
    assert result.ok and result.user_id == "u1" and result.audit == "ok" and result.new_password_hash is None
    result.raise_for_error()


def test_unknown_account_and_wrong_password_look_the_same(password_hash: str) -> None:
    unknown = attempt(None, PASSWORD)
    wrong = attempt(account(password_hash), "not the password!")
    for result in (unknown, wrong):
        assert not result.ok and result.user_id is None
        assert type(result.error) is AuthError and str(result.error) == BAD_CREDENTIALS
        assert result.account_throttle.failures == 1 and result.address_throttle.failures == 1
    assert unknown.account_throttle == wrong.account_throttle
    assert (unknown.audit, wrong.audit) == ("unknown account", "bad password")  # told apart only in the audit log


def test_five_failures_lock_unknown_and_existing_names_alike(password_hash: str) -> None:
    outcomes = []
    for acc in (None, account(password_hash)):
        acct, addr, t = ThrottleState(), ThrottleState(), T0
        for _ in range(5):
            r = attempt(acc, "not the password!", account_throttle=acct, address_throttle=addr, now=t)
            acct, addr, t = r.account_throttle, r.address_throttle, t + timedelta(seconds=5)
        locked = attempt(acc, PASSWORD, account_throttle=acct, address_throttle=addr, now=t)  # even the right one
        assert isinstance(locked.error, AccountLocked) and locked.audit == "locked (account locked)"
        outcomes.append((str(locked.error), locked.error.retry_after_s))
        later = attempt(acc, PASSWORD, account_throttle=acct, address_throttle=addr, now=t + timedelta(minutes=15))
        assert later.ok is (acc is not None)
    assert outcomes[0] == outcomes[1]


def test_success_resets_the_account_throttle_not_the_address_one(password_hash: str) -> None:
    acct = ThrottleState(failures=3, window_start=T0, last_failure=T0)
    addr = ThrottleState(failures=7, window_start=T0, last_failure=T0)
    r = attempt(account(password_hash), PASSWORD, account_throttle=acct, address_throttle=addr)
    assert r.ok and r.account_throttle == ThrottleState() and r.address_throttle == addr


def test_address_lock_refuses_before_checking_the_password(password_hash: str) -> None:
    addr = ThrottleState(locked_until=T0 + timedelta(minutes=3))
    r = attempt(account(password_hash), PASSWORD, address_throttle=addr)
    assert isinstance(r.error, AccountLocked) and r.error.retry_after_s == 180


def test_outdated_hash_is_upgraded_on_success() -> None:
    from argon2 import PasswordHasher

    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    r = attempt(account(old), PASSWORD)
    assert r.ok and r.new_password_hash is not None and r.new_password_hash.startswith("$argon2id$v=19$m=47104")


def test_totp_account_needs_a_code_then_accepts_it_once(password_hash: str) -> None:
    secret = totp.new_secret()
    acc = account(password_hash, totp_secret=secret)
    missing = attempt(acc, PASSWORD)
    assert isinstance(missing.error, SecondFactorRequired) and missing.account_throttle.failures == 0
    code = totp.code_at(secret, totp.current_step(T0))
    ok = attempt(acc, PASSWORD, code)
    assert ok.ok and ok.totp_step == totp.current_step(T0)
    replay = attempt(account(password_hash, totp_secret=secret, totp_last_step=ok.totp_step), PASSWORD, code)
    assert isinstance(replay.error, AuthError) and replay.audit == "bad code" and replay.account_throttle.failures == 1


def test_wrong_password_with_totp_says_bad_credentials_without_asking_for_a_code(password_hash: str) -> None:
    r = attempt(account(password_hash, totp_secret=totp.new_secret()), "not the password!")
    assert str(r.error) == BAD_CREDENTIALS


@pytest.mark.parametrize(
    ("state", "role", "secret", "audit"),
    [
        (AccountState.PENDING, Role.RADIOLOGIST, None, "refused: pending verification"),
        (AccountState.DISABLED, Role.NEUROLOGIST, None, "refused: disabled"),
        (AccountState.ACTIVE, Role.ADMIN, None, "refused: admin without second factor"),
    ],
)
def test_account_state_is_told_only_after_the_password(
    password_hash: str, state: AccountState, role: Role, secret: str | None, audit: str
) -> None:
    acc = account(password_hash, state=state, role=role, totp_secret=secret)
    right = attempt(acc, PASSWORD)
    assert isinstance(right.error, PermissionDenied) and right.audit == audit and right.user_id is None
    wrong = attempt(acc, "not the password!")
    assert str(wrong.error) == BAD_CREDENTIALS


def test_admin_with_totp_signs_in(password_hash: str) -> None:
    secret = totp.new_secret()
    acc = account(password_hash, role=Role.ADMIN, totp_secret=secret)
    assert attempt(acc, PASSWORD, totp.code_at(secret, totp.current_step(T0))).ok
