"""Envelope encryption for the object store and for PHI columns (AES-256-GCM throughout).

Keys
----
* **Master keys** (:class:`MasterKey`, 256 bits) come only from the environment, never from disk:
  ``NEURONAV_MASTER_KEY`` is the *active* key (it wraps every new data key) and
  ``NEURONAV_OLD_MASTER_KEYS`` (comma-separated, 64 hex digits each) lists keys that are still needed
  to read objects written before a rotation. A master key's id (``mk-`` and 16 hex digits) is an
  HMAC-SHA256 fingerprint of the key: it names the key in headers and ``keys.json`` without revealing it.
* **Data keys**: every stored object gets its own random 256-bit key. It is stored only *wrapped*
  (encrypted) by a master key, so rotating a master key re-wraps 60 bytes per object and never
  re-encrypts the data.
* **Field key**: one random 256-bit key for PHI columns, kept wrapped by the master key like a data key
  (see :meth:`neuronav.storage.store.ObjectStore.field_key`).

Key wrapping: AES-256-GCM, not RFC 3394 key wrap
------------------------------------------------
A wrapped key is ``base64(nonce[12] ‖ AESGCM(master).encrypt(nonce, key, aad))`` (60 bytes before base64)
with ``aad = "neuronav/wrap/v1" ‖ 0 ‖ master id ‖ 0 ‖ context``; the context names what the key belongs
to (``obj`` ‖ 0 ‖ object key, or ``field`` ‖ 0 ‖ field key id). RFC 3394 has no associated data, so a
wrapped key copied into another object's header would unwrap fine there; with GCM it fails.

Chunked object encryption
-------------------------
Objects are sealed in chunks (default 4 MiB) so a multi-GB upload never sits in memory. Chunk *i* is
stored as the record ``nonce[12] ‖ ciphertext[len] ‖ tag[16]`` (a fresh random nonce per chunk) with

    ``aad = "neuronav/obj/v1" ‖ 0 ‖ object key ‖ uint64_be(i) ‖ uint8(final)``

so a chunk moved to another position, another object, or a stream cut after a non-final chunk fails
authentication. Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last is
flagged final (an empty object is one empty final chunk). Random 96-bit nonces keep within NIST's
bound of 2**32 messages per key because every object has its own key (2**32 chunks of 4 MiB is 16 PiB).
The object header is sealed with a subkey ``HKDF-SHA256(data key, info="neuronav/obj/v1 header")`` so
the data key itself encrypts only chunks.

PHI fields
----------
:func:`encrypt_field` gives ``nnf1:<field key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`` with
``aad = "neuronav/field/v1" ‖ 0 ‖ column name``: a value copied into another column fails to decrypt.
Encryption is randomised, so equal values give different tokens; look rows up by a keyed pseudonym
(:mod:`neuronav.pseudonym`), never by an encrypted column.

Threat model
------------
Protects confidentiality and integrity of stored bytes against someone who reads or alters the
storage folder, the database or a backup *without* the master keys (stolen disk, leaked backup,
curious admin of the file server). It does not protect against someone who holds the master keys or
runs code inside the service. Sizes, object count, write times and which master key wraps which
object are visible; contents, checksums, kinds and creation times are not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from neuronav.errors import ConfigError
from neuronav.storage.errors import MasterKeyUnavailableError, StorageIntegrityError

if TYPE_CHECKING:
    from neuronav.config import Settings

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
CHUNK_OVERHEAD = NONCE_BYTES + TAG_BYTES
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
WRAPPED_KEY_BYTES = NONCE_BYTES + KEY_BYTES + TAG_BYTES

FIELD_PREFIX = "nnf1"
MASTER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_WRAP_DOMAIN = b"neuronav/wrap/v1\x00"
_CHUNK_DOMAIN = b"neuronav/obj/v1\x00"
_FIELD_DOMAIN = b"neuronav/field/v1\x00"
_HEADER_INFO = b"neuronav/obj/v1 header"
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def _fingerprint(key: bytes, purpose: bytes) -> str:
    return hmac.new(key, b"neuronav key id v1\x00" + purpose, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True, repr=False)
class MasterKey:
    """A 256-bit master key and its id. ``repr`` shows the id only, never the key."""

    id: str
    key_bytes: bytes = field(compare=False)

    def __post_init__(self) -> None:
        if len(self.key_bytes) != KEY_BYTES:
            raise ConfigError(f"master key {self.id!r} must be {KEY_BYTES} bytes (64 hex digits)")
        if not MASTER_ID_PATTERN.fullmatch(self.id):
            raise ConfigError(f"master key id {self.id!r} must be 1-64 letters, digits, '_', '.' or '-'")

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id!r})"

    @classmethod
    def from_bytes(cls, key: bytes) -> MasterKey:
        """The key with its fingerprint id (``mk-`` and 16 hex digits)."""
        if len(key) != KEY_BYTES:
            raise ConfigError(f"a master key must be {KEY_BYTES} bytes (64 hex digits)")
        return cls("mk-" + _fingerprint(key, b"master"), bytes(key))

    @classmethod
    def from_hex(cls, text: str, *, variable: str = "NEURONAV_MASTER_KEY") -> MasterKey:
        """Parse 64 hex digits; the error names ``variable`` but never echoes the value."""
        if not _HEX_KEY.fullmatch(text.strip()):
            raise ConfigError(f"{variable} must hold 64 hex digits (a 256-bit key)")
        return cls.from_bytes(bytes.fromhex(text.strip()))

    @classmethod
    def generate(cls) -> MasterKey:
        """A new random key (print ``key_bytes.hex()`` once for the operator to store in a secret manager)."""
        return cls.from_bytes(secrets.token_bytes(KEY_BYTES))


class Keyring:
    """The master keys a process holds: one active key (wraps new data keys) and older ones (unwrap only).

    Immutable: :meth:`with_active` and :meth:`without` return new keyrings.
    """

    def __init__(self, active: MasterKey, others: Iterable[MasterKey] = ()) -> None:
        keys: dict[str, MasterKey] = {active.id: active}
        for key in others:
            known = keys.get(key.id)
            if known is not None and not hmac.compare_digest(known.key_bytes, key.key_bytes):
                raise ConfigError(f"two different master keys share the id {key.id!r}")
            keys.setdefault(key.id, key)
        self._active = active
        self._keys = keys

    @property
    def active(self) -> MasterKey:
        return self._active

    @property
    def ids(self) -> list[str]:
        """Ids of every key held, the active one first."""
        return list(self._keys)

    def get(self, master_id: str) -> MasterKey:
        try:
            return self._keys[master_id]
        except KeyError:
            raise MasterKeyUnavailableError(
                f"master key {master_id} is not in the keyring (held: {', '.join(self._keys)}); "
                "supply it in NEURONAV_OLD_MASTER_KEYS"
            ) from None

    def with_active(self, key: MasterKey) -> Keyring:
        """This keyring with ``key`` active; the previous keys stay for unwrapping."""
        return Keyring(key, [k for k in self._keys.values() if k.id != key.id])

    def without(self, master_id: str) -> Keyring:
        if master_id == self._active.id:
            raise ConfigError(f"master key {master_id} is the active key and cannot be dropped")
        return Keyring(self._active, [k for k in self._keys.values() if k.id not in (master_id, self._active.id)])

    def __contains__(self, master_id: object) -> bool:
        return master_id in self._keys

    def __iter__(self) -> Iterator[MasterKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(active={self._active.id!r}, ids={self.ids!r})"


def parse_master_keys(text: str, *, variable: str = "NEURONAV_OLD_MASTER_KEYS") -> list[MasterKey]:
    """Comma- or whitespace-separated 64-hex-digit keys; errors name the variable, never the value."""
    keys = []
    for position, part in enumerate(re.split(r"[,\s]+", text.strip()), start=1):
        if part:
            if not _HEX_KEY.fullmatch(part):
                raise ConfigError(f"{variable}: entry {position} must be 64 hex digits (a 256-bit key)")
            keys.append(MasterKey.from_bytes(bytes.fromhex(part)))
    return keys


def keyring_from_settings(settings: Settings) -> Keyring:
    """Active key ``NEURONAV_MASTER_KEY``; older ones ``NEURONAV_OLD_MASTER_KEYS`` (field ``old_master_keys``)."""
    active = MasterKey.from_bytes(settings.master_key_bytes())
    old: object = getattr(settings, "old_master_keys", "")
    return Keyring(active, parse_master_keys(old if isinstance(old, str) else ""))


# -- key wrapping ------------------------------------------------------------------------------------------------


def _b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64, and only its canonical spelling (no altered padding bits slip through unnoticed)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise StorageIntegrityError(f"{what} is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise StorageIntegrityError(f"{what} is not canonical base64 (altered)")
    return raw


def _wrap_aad(master: MasterKey, context: bytes) -> bytes:
    return _WRAP_DOMAIN + master.id.encode("ascii") + b"\x00" + context


def wrap_key(master: MasterKey, key: bytes, context: bytes) -> str:
    """``key`` encrypted by ``master`` and bound to ``context`` (base64 text, 60 bytes decoded)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(master.key_bytes).encrypt(nonce, key, _wrap_aad(master, context))
    return base64.b64encode(nonce + sealed).decode("ascii")


def unwrap_key(master: MasterKey, wrapped: str, context: bytes) -> bytes:
    """Inverse of :func:`wrap_key`; :class:`StorageIntegrityError` for a wrong key, context or altered bytes."""
    raw = _b64decode_strict(wrapped, "wrapped key")
    if len(raw) != WRAPPED_KEY_BYTES:
        raise StorageIntegrityError(f"wrapped key has {len(raw)} bytes, expected {WRAPPED_KEY_BYTES}")
    try:
        return AESGCM(master.key_bytes).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _wrap_aad(master, context))
    except InvalidTag:
        raise StorageIntegrityError(f"wrapped key fails authentication under master key {master.id}") from None


def new_data_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def header_key(data_key: bytes) -> bytes:
    """The subkey that seals an object's header (HKDF-SHA256 of its data key)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_HEADER_INFO).derive(data_key)


def derive_key(master: MasterKey, purpose: str) -> bytes:
    """A 256-bit subkey of ``master`` for one ``purpose`` (HKDF-SHA256, ``info = "neuronav/derived/v1" ‖ 0 ‖
    purpose``): e.g. the HMAC key that authenticates backup manifests. The master key itself never
    signs or encrypts anything but wrapped keys."""
    if not purpose:
        raise ValueError("a derived key needs a purpose")
    info = b"neuronav/derived/v1\x00" + purpose.encode("utf-8")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(master.key_bytes)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> str:
    """``base64(nonce ‖ AESGCM(key).encrypt(nonce, plaintext, aad))``, for small values (headers)."""
    nonce = os.urandom(NONCE_BYTES)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext, aad)).decode("ascii")


def unseal(key: bytes, sealed: str, aad: bytes, what: str) -> bytes:
    """Inverse of :func:`seal`; :class:`StorageIntegrityError` naming ``what`` when it fails."""
    raw = _b64decode_strict(sealed, what)
    if len(raw) < CHUNK_OVERHEAD:
        raise StorageIntegrityError(f"{what} is too short")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
    except InvalidTag:
        raise StorageIntegrityError(f"{what} fails authentication") from None


# -- chunks ------------------------------------------------------------------------------------------------------


class ChunkCipher:
    """Seals and opens the chunk records of one object (see the module docstring for the record format)."""

    def __init__(self, data_key: bytes, object_key: str) -> None:
        self._aes = AESGCM(data_key)
        self._prefix = _CHUNK_DOMAIN + object_key.encode("ascii")

    def aad(self, index: int, final: bool) -> bytes:
        return self._prefix + struct.pack(">QB", index, 1 if final else 0)

    def seal(self, index: int, final: bool, plaintext: bytes | memoryview) -> bytes:
        """The record ``nonce ‖ ciphertext ‖ tag`` of chunk ``index``."""
        return bytes(self.seal_into(index, final, plaintext, bytearray(len(plaintext) + CHUNK_OVERHEAD)))

    def seal_into(self, index: int, final: bool, plaintext: bytes | memoryview, buffer: bytearray) -> memoryview:
        """Like :meth:`seal`, built in the start of ``buffer`` (reused between chunks); returns that part."""
        record = memoryview(buffer)[: len(plaintext) + CHUNK_OVERHEAD]
        nonce = os.urandom(NONCE_BYTES)
        record[:NONCE_BYTES] = nonce
        self._aes.encrypt_into(nonce, plaintext, self.aad(index, final), record[NONCE_BYTES:])
        return record

    def open(self, index: int, final: bool, record: bytes | bytearray | memoryview) -> bytes:
        """The plaintext of a record; :class:`StorageIntegrityError` when it fails authentication."""
        view = memoryview(record)
        if len(view) < CHUNK_OVERHEAD:
            raise StorageIntegrityError(f"chunk {index} is truncated ({len(view)} bytes)")
        try:
            return self._aes.decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], self.aad(index, final))
        except InvalidTag:
            raise StorageIntegrityError(
                f"chunk {index} fails authentication (altered, reordered, truncated or from another object)"
            ) from None

    def open_into(self, index: int, final: bool, record: memoryview, out: memoryview) -> int:
        """Like :meth:`open`, writing the plaintext into the start of ``out``; returns its length (no allocation)."""
        if len(record) < CHUNK_OVERHEAD:
            raise StorageIntegrityError(f"chunk {index} is truncated ({len(record)} bytes)")
        try:
            return self._aes.decrypt_into(
                record[:NONCE_BYTES], record[NONCE_BYTES:], self.aad(index, final), out[: len(record) - CHUNK_OVERHEAD]
            )
        except InvalidTag:
            raise StorageIntegrityError(
                f"chunk {index} fails authentication (altered, reordered, truncated or from another object)"
            ) from None


# -- PHI fields --------------------------------------------------------------------------------------------------


def field_key_id(key: bytes) -> str:
    """Short fingerprint of a field key (written into every token so a wrong key is named, not guessed)."""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"a field key must be {KEY_BYTES} bytes")
    return _fingerprint(key, b"field")[:8]


def _field_aad(column: str) -> bytes:
    if not column:
        raise ValueError("column name must not be empty")
    return _FIELD_DOMAIN + column.encode("utf-8")


def encrypt_field(text: str, key: bytes, column: str) -> str:
    """``nnf1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``, bound to ``column``."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, text.encode("utf-8"), _field_aad(column))
    token = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
    return f"{FIELD_PREFIX}:{field_key_id(key)}:{token}"


def is_encrypted_field(value: str) -> bool:
    return value.startswith(FIELD_PREFIX + ":")


def decrypt_field(token: str, key: bytes, column: str) -> str:
    """Inverse of :func:`encrypt_field`; :class:`StorageIntegrityError` if altered or from another column."""
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != FIELD_PREFIX:
        raise StorageIntegrityError(f"column {column}: not an encrypted field (expected the {FIELD_PREFIX}: prefix)")
    if parts[1] != field_key_id(key):
        raise StorageIntegrityError(f"column {column}: encrypted with field key {parts[1]}, not {field_key_id(key)}")
    try:
        raw = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except (binascii.Error, ValueError) as exc:
        raise StorageIntegrityError(f"column {column}: encrypted field is not valid base64") from exc
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != parts[2]:
        raise StorageIntegrityError(f"column {column}: encrypted field is not canonical base64 (altered)")
    if len(raw) < CHUNK_OVERHEAD:
        raise StorageIntegrityError(f"column {column}: encrypted field is truncated")
    try:
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _field_aad(column))
    except InvalidTag:
        raise StorageIntegrityError(
            f"column {column}: encrypted field fails authentication (altered, or moved from another column)"
        ) from None
    return plain.decode("utf-8")
