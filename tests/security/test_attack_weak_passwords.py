"""Attack: a weak password that follows the length rules (``Technician2024!!``: a role name, a year and
symbols) was accepted at registration and at a password change. Now passwords are scored by zxcvbn
(breached and common passwords, words, names, dates, keyboard patterns; the person's e-mail and name
and this service's words as extra dictionary) and must reach score 4 (NIST SP 800-63B 5.1.1.2)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from neuronav.security.errors import PasswordPolicyError
from neuronav.security.passwords import MIN_SCORE, check_password_policy, guessability, password_problems
from tests.service.conftest import NEW_PASSWORD, PASSWORD, People

WEAK = [
    "Technician2024!!",
    "Radiologist2025!",
    "Neuronav2024!!",
    "Summer2024!!!!",
    "Hospital123456",
    "qwertyuiop[]asdf",
]
STRONG = [PASSWORD, NEW_PASSWORD, "violet-harbour-quietly-47", "a fresh passphrase for the demo reader"]


@pytest.mark.parametrize("password", WEAK)
def test_weak_policy_compliant_passwords_are_refused_as_too_easy_to_guess(password: str) -> None:
    with pytest.raises(PasswordPolicyError) as refused:
        check_password_policy(password, email="pat.lee@hospital.example", display_name="Pat Lee")
    assert any(p.startswith("The password is too easy to guess: ") for p in refused.value.problems)
    assert password not in " ".join(refused.value.problems)  # the refusal never quotes the password


@pytest.mark.parametrize("password", STRONG)
def test_the_fixture_passwords_are_strong(password: str) -> None:
    assert password_problems(password, email="pat.lee@hospital.example", display_name="Pat Lee") == []
    assert guessability(password)[0] >= MIN_SCORE


def test_the_persons_name_counts_as_a_guessable_word() -> None:
    strong_for_others = "Okonkwo Okonkwo 1979"
    assert guessability(strong_for_others)[0] >= MIN_SCORE
    assert guessability(strong_for_others, display_name="Dr Chidi Okonkwo")[0] < MIN_SCORE


def test_a_long_passphrase_is_scored_without_error() -> None:
    assert password_problems("river " * 150) != []  # scored on its first 72 characters: a repetition
    assert password_problems("quiet river stone lantern, " * 30) == []


def test_registration_refuses_the_weak_password(client: TestClient) -> None:
    body = {
        "email": "new.tech@hospital.example",
        "password": "Technician2024!!",
        "display_name": "New Tech",
        "role": "technician",
        "licence_number": "HCPC 1234",
    }
    response = client.post("/api/auth/register", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "PasswordPolicyError"
    assert any("too easy to guess" in p for p in response.json()["problems"])


def test_a_password_change_refuses_the_weak_password(client: TestClient, people: People) -> None:
    person = people.create("technician")
    headers = people.login(person)
    response = client.post(
        "/api/auth/password",
        json={"current_password": person.password, "new_password": "Technician2024!!"},
        headers=headers,
    )
    assert response.status_code == 422, response.text
    assert any("too easy to guess" in p for p in response.json()["problems"])
