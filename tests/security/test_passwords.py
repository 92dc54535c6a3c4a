"""argon2id hashing with the documented parameters, rehash on upgrade, and the password policy."""

from __future__ import annotations

import time

import pytest
from argon2 import PasswordHasher, Type

from neuronav.security import passwords
from neuronav.security.errors import PasswordPolicyError
from neuronav.security.passwords import (
    check_password_policy,
    hash_password,
    needs_rehash,
    password_problems,
    verify_and_update,
    verify_dummy,
    verify_password,
)

GOOD = "violet-harbour-quietly-47"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(GOOD)


def test_hash_is_argon2id_with_the_documented_parameters(stored: str) -> None:
    assert stored.startswith("$argon2id$v=19$m=47104,t=2,p=1$")
    assert passwords.MEMORY_COST_KIB >= 19456 and passwords.TIME_COST >= 2 and passwords.PARALLELISM == 1
    salt_b64, hash_b64 = stored.split("$")[4:6]
    assert len(salt_b64) == 22 and len(hash_b64) == 43  # 16-byte salt, 32-byte hash (unpadded base64)
    assert hash_password(GOOD) != stored  # a fresh salt every time


def test_right_password_verifies_and_wrong_ones_do_not(stored: str) -> None:
    assert verify_password(stored, GOOD) is True
    assert verify_password(stored, GOOD + " ") is False
    assert verify_password(stored, GOOD.upper()) is False
    assert verify_password(stored, "") is False


def test_unreadable_hash_is_false_not_an_exception() -> None:
    assert verify_password("not-a-hash", GOOD) is False
    assert verify_password("$argon2id$v=19$m=47104,t=2,p=1$broken", GOOD) is False
    assert needs_rehash("not-a-hash") is True


def test_weaker_hash_is_detected_and_upgraded_on_sign_in(stored: str) -> None:
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(GOOD)
    assert needs_rehash(old) is True
    assert needs_rehash(stored) is False
    ok, new_hash = verify_and_update(old, GOOD)
    assert ok and new_hash is not None and new_hash.startswith("$argon2id$v=19$m=47104,t=2,p=1$")
    assert verify_password(new_hash, GOOD)
    assert verify_and_update(old, "wrong password!!") == (False, None)
    assert verify_and_update(stored, GOOD) == (True, None)


def test_argon2i_hash_of_the_right_password_is_upgraded_to_argon2id() -> None:
    old = PasswordHasher(type=Type.I).hash(GOOD)
    ok, new_hash = verify_and_update(old, GOOD)
    assert ok and new_hash is not None and new_hash.startswith("$argon2id$")


def test_dummy_verification_is_false_and_costs_a_real_verification(stored: str) -> None:
    verify_dummy("warm-up")
    start = time.perf_counter()
    assert verify_dummy(GOOD) is False
    dummy = time.perf_counter() - start
    start = time.perf_counter()
    verify_password(stored, "wrong password!!")
    real = time.perf_counter() - start
    assert dummy > real / 4  # same work (generous bound: the machine is shared)


def test_hashing_time_is_in_the_intended_range() -> None:
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        hash_password(GOOD)
        timings.append(time.perf_counter() - start)
    assert 0.01 < min(timings) < 1.0  # ~50–100 ms on the development machine; loose for CI


@pytest.mark.parametrize("password", [GOOD, "correct horse battery staple in june", "Ünïcödé-pässwörd-ok"])
def test_acceptable_passwords_pass(password: str) -> None:
    assert password_problems(password, username="jdoe", email="jane.doe@hospital.example") == []
    check_password_policy(password, username="jdoe", email="jane.doe@hospital.example")


def test_short_password_is_refused_with_its_length() -> None:
    problems = password_problems("Short1!pass")
    assert problems == ["The password must be at least 12 characters long (it has 11)."]


@pytest.mark.parametrize("password", ["password1234", "Password1234", "PASSWORD 1234", "Correct Horse Battery Staple"])
def test_common_passwords_are_refused_whatever_the_case_and_spaces(password: str) -> None:
    assert any("too common" in p for p in password_problems(password))


def test_single_character_repeats_are_refused() -> None:
    assert any("too few different characters" in p for p in password_problems("aaaaaaaaaaaaaaaa"))


def test_username_and_email_may_not_appear_in_the_password() -> None:
    assert password_problems("xx-DrWho-xx-2024", username="drwho") == ["The password must not contain your user name."]
    assert password_problems("my jane.doe secret", email="Jane.Doe@hospital.example") == [
        "The password must not contain your e-mail address."
    ]
    assert password_problems("ab-long-enough-pass", username="ab") == []  # too short to be a meaningful match


def test_policy_error_carries_every_problem() -> None:
    with pytest.raises(PasswordPolicyError) as info:
        check_password_policy("jdoe1", username="jdoe")
    assert len(info.value.problems) == 2
    assert "at least 12 characters" in str(info.value) and "user name" in str(info.value)


def test_overlong_password_is_refused_by_policy_and_not_verified(stored: str) -> None:
    assert any("at most 1024" in p for p in password_problems("x" + "abcdefgh" * 200))
    assert verify_password(stored, "a" * 5000) is False
