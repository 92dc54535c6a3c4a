"""Errors of the encrypted object store (all :class:`neuronav.errors.NeuroNavError`).

::

    StorageError                    anything the store refuses or cannot do
    ├── ObjectNotFoundError         no object under that key (or the text is not a storage key at all)
    ├── StorageIntegrityError       an object, header or PHI field that fails authentication: tampered,
    │                               corrupted, truncated, swapped with another object, or its data missing
    ├── MasterKeyUnavailableError   the object's data key is wrapped by a master key the keyring lacks
    └── UploadTooLargeError         more bytes than ``max_bytes``; also an :class:`~neuronav.errors.InputError`
                                    so the HTTP layer answers 413 like any other bad upload
"""

from __future__ import annotations

from neuronav.errors import InputError, NeuroNavError


class StorageError(NeuroNavError):
    """The object store refused or failed an operation."""


class ObjectNotFoundError(StorageError):
    """No stored object under that key."""


class StorageIntegrityError(StorageError):
    """Stored bytes fail authentication or their checksum: never return them to anyone.

    ``problem`` says what failed; ``key`` names the object when there is one.
    """

    def __init__(self, problem: str, key: str | None = None) -> None:
        self.problem = problem
        self.key = key
        super().__init__(f"{key}: {problem}" if key else problem)


class MasterKeyUnavailableError(StorageError):
    """An object needs a master key that was not supplied (:func:`neuronav.storage.crypto.keyring_from_settings`)."""


class UploadTooLargeError(InputError, StorageError):
    """An upload over the size cap; nothing of it is kept."""
