"""TOTP (RFC 6238): codes of now and ±1 step accepted, replays and wrong codes refused."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from neuronav.security import totp

T0 = datetime(2025, 3, 1, 9, 0, 10, tzinfo=UTC)


@pytest.fixture
def secret() -> str:
    return totp.new_secret()


def test_secret_is_160_bits_of_base32(secret: str) -> None:
    assert len(secret) == 32 and set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert secret != totp.new_secret()


def test_provisioning_uri_is_what_authenticator_apps_read(secret: str) -> None:
    uri = totp.provisioning_uri(secret, "jane.doe@hospital.example")
    parsed = urlparse(uri)
    query = parse_qs(parsed.query)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert parsed.path == "/NeuroNav:jane.doe%40hospital.example"
    assert query["secret"] == [secret] and query["issuer"] == ["NeuroNav"]
    assert query.get("digits", ["6"]) == ["6"] and query.get("period", ["30"]) == ["30"]
    assert query.get("algorithm", ["SHA1"]) == ["SHA1"]


def test_codes_match_rfc6238_reference_vector() -> None:
    # RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 s → 94287082 (8 digits; 6: 287082)
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp.code_at(secret, 59 // 30) == "287082"


def test_code_of_now_is_accepted_and_returns_its_step(secret: str) -> None:
    step = totp.current_step(T0)
    assert totp.verify(secret, totp.code_at(secret, step), None, now=T0) == step
    assert totp.verify(secret, pyotp.TOTP(secret).at(T0), None, now=T0) == step  # same as an authenticator app


@pytest.mark.parametrize("offset", [-1, 1])
def test_one_step_either_side_is_accepted(secret: str, offset: int) -> None:
    step = totp.current_step(T0)
    assert totp.verify(secret, totp.code_at(secret, step + offset), None, now=T0) == step + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_further_away_are_refused(secret: str, offset: int) -> None:
    step = totp.current_step(T0)
    code = totp.code_at(secret, step + offset)
    if code in {totp.code_at(secret, step + d) for d in (-1, 0, 1)}:
        pytest.skip("one-in-a-million collision of codes")
    assert totp.verify(secret, code, None, now=T0) is None


def test_a_code_cannot_be_used_twice(secret: str) -> None:
    code = totp.code_at(secret, totp.current_step(T0))
    used = totp.verify(secret, code, None, now=T0)
    assert used is not None
    assert totp.verify(secret, code, used, now=T0) is None
    assert totp.verify(secret, code, used, now=T0 + timedelta(seconds=25)) is None  # still in the window


def test_an_earlier_step_is_refused_after_a_later_one_was_used(secret: str) -> None:
    step = totp.current_step(T0)
    later = totp.verify(secret, totp.code_at(secret, step + 1), None, now=T0)
    assert later == step + 1
    assert totp.verify(secret, totp.code_at(secret, step), later, now=T0) is None
    nxt = T0 + timedelta(seconds=60)
    assert totp.verify(secret, totp.code_at(secret, step + 2), later, now=nxt) == step + 2


def test_wrong_and_malformed_codes_are_refused(secret: str) -> None:
    good = totp.code_at(secret, totp.current_step(T0))
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for code in (wrong, "", "12345", "1234567", "abcdef", "١٢٣٤٥٦", good + "0"):
        assert totp.verify(secret, code, None, now=T0) is None


def test_spaces_inside_a_code_are_ignored(secret: str) -> None:
    good = totp.code_at(secret, totp.current_step(T0))
    assert totp.verify(secret, f" {good[:3]} {good[3:]} ", None, now=T0) is not None


def test_another_secrets_code_is_refused(secret: str) -> None:
    other = totp.new_secret()
    code = totp.code_at(other, totp.current_step(T0))
    if code in {totp.code_at(secret, totp.current_step(T0) + d) for d in (-1, 0, 1)}:
        pytest.skip("one-in-a-million collision of codes")
    assert totp.verify(secret, code, None, now=T0) is None
