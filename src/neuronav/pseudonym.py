"""Pseudonymous patient ids: a keyed HMAC-SHA256 of the patient id, never a plain or salted hash.

The key comes from ``NEURONAV_PSEUDONYM_KEY`` (hex or text, ≥ 32 bytes), else from a key file in the
NeuroNav data folder (``NEURONAV_DATA_DIR``, default ``~/.local/share/neuronav``) created on first
use with 256 random bits and mode 0600. The same key gives the same pseudonym for the same patient,
so studies can be linked; without the key a pseudonym cannot be reversed or recomputed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from neuronav.errors import ConfigError

KEY_ENV = "NEURONAV_PSEUDONYM_KEY"
MIN_KEY_BYTES = 32
PREFIX = "NNP-"


def data_dir() -> Path:
    env = os.environ.get("NEURONAV_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "neuronav"


def pseudonym_key() -> bytes:
    """The site's pseudonymisation key (see the module docstring)."""
    raw = os.environ.get(KEY_ENV)
    if raw:
        try:
            key = bytes.fromhex(raw)
        except ValueError:
            key = raw.encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"{KEY_ENV} must hold at least {MIN_KEY_BYTES} bytes (64 hex digits)")
        return key
    path = data_dir() / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    key = bytes.fromhex(path.read_text().strip())
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{path}: pseudonym key shorter than {MIN_KEY_BYTES} bytes")
    return key


def pseudonymise(patient_id: str, key: bytes | None = None) -> str:
    """``NNP-`` and 20 hex digits of HMAC-SHA256(key, patient id)."""
    if not patient_id.strip():
        raise ValueError("empty patient id")
    digest = hmac.new(key if key is not None else pseudonym_key(), patient_id.strip().encode("utf-8"), hashlib.sha256)
    return PREFIX + digest.hexdigest()[:20]
