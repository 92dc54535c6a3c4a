"""Pseudonymous patient ids: a keyed HMAC-SHA256 of the patient id, never a plain or salted hash.

The key is the site's ``NEURONAV_PSEUDONYM_KEY`` (:mod:`neuronav.config`; generated once and kept in
the data folder in development mode). The same key gives the same pseudonym for the same patient,
so studies can be linked; without the key a pseudonym can be neither reversed nor recomputed.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from neuronav.errors import ConfigError

if TYPE_CHECKING:
    from neuronav.config import Settings

MIN_KEY_BYTES = 32
PREFIX = "NNP-"


def pseudonym_key(settings: Settings | None = None) -> bytes:
    """The site's pseudonymisation key (hex, or text of at least 32 bytes) of ``settings`` (default:
    :func:`neuronav.config.get_settings`)."""
    if settings is None:
        from neuronav.config import get_settings

        settings = get_settings()
    raw = settings.pseudonym_key
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        key = raw.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"NEURONAV_PSEUDONYM_KEY must hold at least {MIN_KEY_BYTES} bytes (64 hex digits)")
    return key


def pseudonymise(patient_id: str, key: bytes | None = None) -> str:
    """``NNP-`` and 20 hex digits of HMAC-SHA256(key, patient id)."""
    if not patient_id.strip():
        raise ValueError("empty patient id")
    digest = hmac.new(key if key is not None else pseudonym_key(), patient_id.strip().encode("utf-8"), hashlib.sha256)
    return PREFIX + digest.hexdigest()[:20]
