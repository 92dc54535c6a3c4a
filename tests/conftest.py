"""Shared test fixtures. Test data is generated here, never downloaded."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Tests never touch the user's data folder (settings, generated dev secrets, pseudonym key).
os.environ.setdefault("NEURONAV_DATA_DIR", tempfile.mkdtemp(prefix="neuronav-test-data-"))


def require_binary(name: str) -> str:
    """Path of a system binary the test needs; FAIL (never skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/setup.sh (CI installs it)")
    return path
