"""The attack tests reuse the service fixtures (settings in a temporary data folder, the app, a
TestClient, people of every role): see ``tests/service/conftest.py``."""

from __future__ import annotations

from tests.service.conftest import app, client, database_url, people, settings, staff

__all__ = ["app", "client", "database_url", "people", "settings", "staff"]
