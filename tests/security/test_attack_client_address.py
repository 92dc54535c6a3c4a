"""Attack: a forged ``X-Forwarded-For`` reset the per-address sign-in throttle and registration limit,
and the forged value was written into the audit trail (uvicorn believed the header from loopback).

Now the client address is the socket's, unless the peer is listed in ``NEURONAV_TRUSTED_PROXIES``;
then the right-most untrusted address of ``X-Forwarded-For``. Tested on the pure rule, in-process
(the TestClient with a loopback peer, as a proxy on the same host would be), and over HTTP against a
real ``neuronav serve``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from neuronav.config import Settings, load_settings
from neuronav.security.network import client_address, parse_networks
from neuronav.security.throttle import ADDRESS_POLICY, REGISTRATION_POLICY
from neuronav.service import create_app
from tests.service.conftest import audit_events
from tests.service.test_serve import Served, _serve

PASSWORD = "quiet river stone lantern"
LOOPBACK = ("127.0.0.1", 50000)


def _registration(n: int) -> dict[str, str]:
    return {
        "email": f"spoof-{n}@hospital.example",
        "password": PASSWORD,
        "display_name": f"Person {n}",
        "role": "radiologist",
        "licence_number": f"GMC {7000000 + n}",
    }


def _forged(n: int) -> str:
    return str(ipaddress.ip_address("203.0.113.1") + n)


# -- the rule ------------------------------------------------------------------------------------

PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("127.0.0.1", [], "127.0.0.1"),  # no proxy listed below: the socket
        ("198.51.100.9", ["6.6.6.6"], "198.51.100.9"),  # an untrusted peer's header is ignored
        ("10.0.0.2", ["198.51.100.7"], "198.51.100.7"),  # one trusted proxy
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),  # what the client wrote to the left is ignored
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7, 10.1.1.1"], "198.51.100.7"),  # two proxies in a chain
        ("10.0.0.2", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),  # several header lines: one list
        ("10.0.0.2", ["198.51.100.7:4711"], "198.51.100.7"),  # a port is dropped
        ("10.0.0.2", ["not-an-address"], "10.0.0.2"),  # garbage: the trusted hop to its right
        ("10.0.0.2", ["198.51.100.7, <script>"], "10.0.0.2"),
        ("10.0.0.2", ["10.9.9.9, 10.8.8.8"], "10.9.9.9"),  # all trusted: the left-most
        ("10.0.0.2", [], "10.0.0.2"),
        ("::ffff:10.0.0.2", ["2001:db8::5"], "2001:db8::5"),  # IPv4-mapped peer; IPv6 client
        ("fd00::1", ["[2001:db8::6]:443"], "2001:db8::6"),
        ("testclient", ["6.6.6.6"], "testclient"),
        (None, ["6.6.6.6"], "unknown"),
    ],
)
def test_the_client_is_the_right_most_untrusted_address(peer: str | None, header: list[str], expected: str) -> None:
    assert client_address(peer, header, PROXIES) == expected


def test_no_proxy_is_trusted_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEURONAV_TRUSTED_PROXIES", raising=False)
    assert Settings().trusted_proxies == ""
    assert client_address("127.0.0.1", ["6.6.6.6"], parse_networks("")) == "127.0.0.1"


def test_a_malformed_proxy_list_is_refused_naming_the_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURONAV_TRUSTED_PROXIES", "10.0.0.0/8, proxy.example")
    with pytest.raises(ValidationError, match=r"proxy\.example"):
        Settings()


# -- in-process: a loopback peer with a forged header ---------------------------------------------


def test_forged_header_from_loopback_does_not_reset_the_registration_limit(settings: Settings) -> None:
    with TestClient(create_app(settings), client=LOOPBACK) as client:
        for n in range(REGISTRATION_POLICY.max_failures):
            response = client.post("/api/auth/register", json=_registration(n), headers={"X-Forwarded-For": _forged(n)})
            assert response.status_code == 202, response.text
        response = client.post("/api/auth/register", json=_registration(99), headers={"X-Forwarded-For": _forged(99)})
    assert response.status_code == 429, response.text
    clients = {event.client for event in audit_events(settings, "user.register")}
    assert clients == {"127.0.0.1"}  # no forged value in the audit trail


def test_forged_header_from_loopback_does_not_reset_the_sign_in_throttle(settings: Settings) -> None:
    with TestClient(create_app(settings), client=LOOPBACK) as client:
        statuses = [
            client.post(
                "/api/auth/login",
                json={"email": f"nobody-{n}@hospital.example", "password": "wrong password!!"},
                headers={"X-Forwarded-For": _forged(n)},
            ).status_code
            for n in range(ADDRESS_POLICY.max_failures + 1)
        ]
    assert statuses[:-1] == [401] * ADDRESS_POLICY.max_failures
    assert statuses[-1] == 429
    assert {event.client for event in audit_events(settings, "login")} == {"127.0.0.1"}


@pytest.fixture
def behind_proxy(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("NEURONAV_TRUSTED_PROXIES", "127.0.0.1")
    return load_settings()


def test_behind_a_trusted_proxy_the_forwarded_client_is_used_and_throttled(behind_proxy: Settings) -> None:
    with TestClient(create_app(behind_proxy), client=LOOPBACK) as client:
        # the attacker's own prefix varies; the proxy appends the real address: one client throughout
        for n in range(REGISTRATION_POLICY.max_failures):
            forwarded = f"{_forged(n)}, 198.51.100.7"
            response = client.post("/api/auth/register", json=_registration(n), headers={"X-Forwarded-For": forwarded})
            assert response.status_code == 202, response.text
        refused = client.post(
            "/api/auth/register", json=_registration(99), headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}
        )
        assert refused.status_code == 429, refused.text
        # another real client behind the same proxy is not affected
        other = client.post("/api/auth/register", json=_registration(100), headers={"X-Forwarded-For": "198.51.100.8"})
        assert other.status_code == 202, other.text
    clients = [event.client for event in audit_events(behind_proxy, "user.register")]
    assert set(clients) == {"198.51.100.7", "198.51.100.8"}


# -- over HTTP: a real `neuronav serve` -----------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path / "data", ready_within=60)


def test_neuronav_serve_ignores_a_forged_header(served: Served, tmp_path: Path) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        statuses = [
            client.post(
                "/api/auth/register", json=_registration(n), headers={"X-Forwarded-For": _forged(n)}
            ).status_code
            for n in range(REGISTRATION_POLICY.max_failures + 1)
        ]
    assert statuses == [202] * REGISTRATION_POLICY.max_failures + [429]
    from neuronav.db.session import session_scope

    database = f"sqlite:///{tmp_path / 'data' / 'neuronav.db'}"
    with session_scope(database) as db:
        from sqlalchemy import select

        from neuronav.db.models import AuditEventRow

        clients = set(db.scalars(select(AuditEventRow.client).where(AuditEventRow.action == "user.register")))
    assert clients == {"127.0.0.1"}
