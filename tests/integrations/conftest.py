"""Session-scoped real peers: one MLLP receiver (hl7apy) and one FHIR server (Medplum in Node)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.integrations.peers import FhirServer, OruPeer


@pytest.fixture(scope="session")
def oru_peer_session() -> Iterator[OruPeer]:
    peer = OruPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def oru_peer(oru_peer_session: OruPeer) -> Iterator[OruPeer]:
    oru_peer_session.reset()
    yield oru_peer_session
    oru_peer_session.reset()


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirServer]:
    server = FhirServer(token=secrets.token_urlsafe(16)).start()
    yield server
    server.stop()
