"""Encrypted object storage: uploads and outputs at rest (AES-256-GCM, envelope keys) and PHI column encryption.

* :mod:`neuronav.storage.store` — :class:`ObjectStore`: on-disk layout, atomic writes, verify, rotate, retire;
* :mod:`neuronav.storage.crypto` — key handling, the chunk format, :func:`encrypt_field` / :func:`decrypt_field`,
  and the threat model;
* :mod:`neuronav.storage.errors` — the error tree.

Typical use::

    store = ObjectStore.from_settings()            # NEURONAV_STORAGE_DIR, NEURONAV_MASTER_KEY, NEURONAV_OLD_MASTER_KEYS
    obj = store.put(upload.file, kind="upload", max_bytes=settings.max_upload_bytes)
    with store.open(obj.key) as reader:            # authenticated, streamed
        for chunk in reader: ...
    problems = store.verify_all()                  # `neuronav verify`
    store.rotate(MasterKey.from_hex(new_hex)); store.retire(old_id)   # `neuronav keys rotate`
    token = encrypt_field(name, store.field_key(), "patients.name")
"""

from neuronav.storage.crypto import (
    Keyring,
    MasterKey,
    decrypt_field,
    encrypt_field,
    is_encrypted_field,
    keyring_from_settings,
    parse_master_keys,
)
from neuronav.storage.errors import (
    MasterKeyUnavailableError,
    ObjectNotFoundError,
    StorageError,
    StorageIntegrityError,
    UploadTooLargeError,
)
from neuronav.storage.store import EncryptedObject, ObjectReader, ObjectStore, RotationReport, VerifyProblem

__all__ = [
    "EncryptedObject",
    "Keyring",
    "MasterKey",
    "MasterKeyUnavailableError",
    "ObjectNotFoundError",
    "ObjectReader",
    "ObjectStore",
    "RotationReport",
    "StorageError",
    "StorageIntegrityError",
    "UploadTooLargeError",
    "VerifyProblem",
    "decrypt_field",
    "encrypt_field",
    "is_encrypted_field",
    "keyring_from_settings",
    "parse_master_keys",
]
