"""Login throttling and soft lockout with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from neuronav.security.throttle import (
    ACCOUNT_POLICY,
    ADDRESS_POLICY,
    REGISTRATION_POLICY,
    ThrottleState,
    check,
    check_all,
    check_registration,
    lockout_duration,
    login_key,
    record_failure,
    record_success,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def fail(state: ThrottleState, times: int, at: datetime, every: timedelta = timedelta(seconds=10)) -> ThrottleState:
    for i in range(times):
        state = record_failure(state, ACCOUNT_POLICY, now=at + every * i)
    return state


def test_four_failures_still_allowed_fifth_locks_for_15_minutes() -> None:
    state = fail(ThrottleState(), 4, T0)
    assert check(state, ACCOUNT_POLICY, now=T0 + timedelta(minutes=1)).allowed
    state = record_failure(state, ACCOUNT_POLICY, now=T0 + timedelta(minutes=1))
    decision = check(state, ACCOUNT_POLICY, now=T0 + timedelta(minutes=1))
    assert not decision.allowed and decision.retry_after_s == 15 * 60
    assert decision.message == "Too many failed sign-in attempts. Try again in 15 minutes."
    assert decision.reason == "account locked"


def test_wait_counts_down_and_lock_expires_with_the_clock() -> None:
    state = fail(ThrottleState(), 5, T0, every=timedelta(0))
    assert check(state, ACCOUNT_POLICY, now=T0 + timedelta(minutes=10)).retry_after_s == 5 * 60
    last = check(state, ACCOUNT_POLICY, now=T0 + timedelta(minutes=14, seconds=30))
    assert last.retry_after_s == 30 and last.message.endswith("30 seconds.")
    assert check(state, ACCOUNT_POLICY, now=T0 + timedelta(minutes=15)).allowed


def test_success_resets_the_account_counter() -> None:
    state = fail(ThrottleState(), 4, T0)
    state = record_success(state, ACCOUNT_POLICY, now=T0 + timedelta(minutes=1))
    assert state == ThrottleState()
    state = fail(state, 4, T0 + timedelta(minutes=2))
    assert check(state, ACCOUNT_POLICY, now=T0 + timedelta(minutes=3)).allowed


def test_failures_spread_beyond_the_window_do_not_lock() -> None:
    state = fail(ThrottleState(), 4, T0)
    state = fail(state, 4, T0 + timedelta(minutes=16))  # a new window began
    assert check(state, ACCOUNT_POLICY, now=T0 + timedelta(minutes=17)).allowed
    assert state.failures == 4


def test_repeated_lockouts_double_up_to_a_cap_and_are_forgotten_later() -> None:
    assert [lockout_duration(ACCOUNT_POLICY, n) for n in range(3)] == [
        timedelta(minutes=15),
        timedelta(minutes=30),
        timedelta(minutes=60),
    ]
    assert lockout_duration(ACCOUNT_POLICY, 50) == timedelta(hours=24)
    state, t = ThrottleState(), T0
    waits = []
    for _ in range(3):
        state = fail(state, 5, t, every=timedelta(0))
        decision = check(state, ACCOUNT_POLICY, now=t)
        waits.append(decision.retry_after_s)
        t += timedelta(seconds=decision.retry_after_s)
    assert waits == [15 * 60, 30 * 60, 60 * 60]
    state = fail(state, 5, t + timedelta(hours=25), every=timedelta(0))  # quiet for a day: back to 15 min
    assert check(state, ACCOUNT_POLICY, now=t + timedelta(hours=25)).retry_after_s == 15 * 60


def test_long_waits_are_told_in_hours() -> None:
    state = ThrottleState(locked_until=T0 + timedelta(hours=4))
    assert check(state, ACCOUNT_POLICY, now=T0).message == "Too many failed sign-in attempts. Try again in 4 hours."


def test_per_address_limit_is_20_failures_in_15_minutes_and_survives_success() -> None:
    state = ThrottleState()
    for i in range(19):
        state = record_failure(state, ADDRESS_POLICY, now=T0 + timedelta(seconds=20 * i))
    assert check(state, ADDRESS_POLICY, now=T0 + timedelta(minutes=7)).allowed
    state = record_success(state, ADDRESS_POLICY, now=T0 + timedelta(minutes=7))  # attacker's own account
    state = record_failure(state, ADDRESS_POLICY, now=T0 + timedelta(minutes=7))
    decision = check(state, ADDRESS_POLICY, now=T0 + timedelta(minutes=7))
    assert not decision.allowed and decision.retry_after_s == 15 * 60 and decision.reason == "address locked"
    assert check(state, ADDRESS_POLICY, now=T0 + timedelta(minutes=22)).allowed


def test_address_lockouts_do_not_escalate() -> None:
    assert lockout_duration(ADDRESS_POLICY, 5) == timedelta(minutes=15)


def test_check_all_takes_the_longer_wait_with_the_same_message_text() -> None:
    account = ThrottleState(locked_until=T0 + timedelta(minutes=30))
    address = ThrottleState(locked_until=T0 + timedelta(minutes=5))
    decision = check_all(account, address, now=T0)
    assert decision.retry_after_s == 30 * 60 and decision.reason == "account locked"
    only_address = check_all(ThrottleState(), address, now=T0)
    assert only_address.reason == "address locked"
    assert only_address.message == "Too many failed sign-in attempts. Try again in 5 minutes."
    assert check_all(ThrottleState(), ThrottleState(), now=T0).allowed


def test_unknown_and_existing_names_get_identical_decisions() -> None:
    # The account throttle is keyed by the typed name, whether or not it exists: same inputs, same output.
    existing = fail(ThrottleState(), 5, T0)
    unknown = fail(ThrottleState(), 5, T0)
    at = T0 + timedelta(minutes=2)
    assert check(existing, ACCOUNT_POLICY, now=at) == check(unknown, ACCOUNT_POLICY, now=at)
    assert "account" not in check(existing, ACCOUNT_POLICY, now=at).message


def test_login_key_normalises_the_typed_name() -> None:
    assert login_key("  Jane.Doe@Hospital.example ") == login_key("jane.doe@hospital.example")
    assert login_key("ＪＤＯＥ") == "jdoe"  # full-width letters (NFKC)


def test_naive_now_is_refused_but_naive_stored_times_are_utc() -> None:
    with pytest.raises(ValueError):
        check(ThrottleState(), ACCOUNT_POLICY, now=datetime(2025, 1, 1))
    stored = ThrottleState(locked_until=datetime(2025, 3, 1, 9, 10))
    assert check(stored, ACCOUNT_POLICY, now=T0).retry_after_s == 600


def test_registrations_are_limited_per_address_for_an_hour() -> None:
    state = ThrottleState()
    for i in range(REGISTRATION_POLICY.max_failures - 1):
        state = record_failure(state, REGISTRATION_POLICY, now=T0 + timedelta(minutes=i))
        assert check_registration(state, now=T0 + timedelta(minutes=i)).allowed
    last = T0 + timedelta(minutes=30)
    state = record_failure(state, REGISTRATION_POLICY, now=last)  # the 10th within the hour
    refused = check_registration(state, now=last)
    assert not refused.allowed and refused.retry_after_s == 3600
    assert refused.message == "Too many registrations from this address. Try again in 60 minutes."
    assert refused.reason == "registration locked"
    assert check_registration(state, now=last + timedelta(hours=1)).allowed
