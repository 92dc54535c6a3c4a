"""The errors of the models package (all :class:`neuronav.errors.NeuroNavError`)::

ModelError
├── ModelNotFoundError        no model / ensemble of that name (the message lists the available ones)
├── ModelCardError            a card that is not valid (names the card file and the problem)
├── ModelIntegrityError       the file's sha256 differs from its card (names file, expected, found)
└── ModelRegistrationError    a model that cannot be registered (shapes, conflicts, missing torch)
"""

from __future__ import annotations

from pathlib import Path

from neuronav.errors import NeuroNavError


class ModelError(NeuroNavError):
    """Base of the errors of :mod:`neuronav.analysis.models`."""


class ModelNotFoundError(ModelError):
    """No model or ensemble of the requested name/version/task."""


class ModelCardError(ModelError):
    """A model card that is missing, unreadable or invalid."""


class ModelIntegrityError(ModelError):
    """The model file does not match the sha256 on its card."""

    def __init__(self, path: Path, expected: str, found: str) -> None:
        self.path = path
        self.expected = expected
        self.found = found
        super().__init__(
            f"{path}: checksum mismatch, the card expects sha256 {expected} but the file has {found}; "
            "the file was changed or damaged, refusing to run it"
        )


class ModelRegistrationError(ModelError):
    """A model that cannot be registered."""
