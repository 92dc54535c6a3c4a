"""Models: shipped and site-registered ONNX models, their cards, checksums and sessions.

The package, by job (import from here; the modules are the implementation)::

    cards          ModelCard (card.json, the source of truth) and card.md; file_sha256
    catalogue      where models are, which are installed (neuronav models), which an analysis runs
    runtime        checksum-verified ONNX Runtime sessions (cached per process); resolve()
    registration   register a site's own model (ONNX, or a MONAI bundle) into the user models folder
    bundle         MONAI bundle (TorchScript) → ONNX conversion; the only step that needs torch
    errors         the ModelError tree below

Layout (the same for shipped and user models)::

    <models dir>/<name>/<version>/model.onnx   the network, run by ONNX Runtime only
    <models dir>/<name>/<version>/card.json    its :class:`ModelCard`
    <models dir>/<name>/<version>/card.md      the same card for humans, generated from card.json

Shipped models are package data, ``neuronav/shipped_models`` (a wheel carries them), unless the
setting ``NEURONAV_MODELS_DIR`` names another folder. Models a site registers itself
(:func:`register_model`) go to ``NEURONAV_USER_MODELS_DIR``, by default
``$XDG_DATA_HOME/neuronav/models``, else ``~/.local/share/neuronav/models``. A shipped model shadows
a user model of the same name and version. ``NEURONAV_THREADS`` sets ONNX Runtime's threads.

Every load verifies the sha256 of the file against its card before ONNX Runtime sees it
(:class:`ModelIntegrityError` otherwise). Every card must say "not for clinical use".

Ensembles: models whose cards share ``ensemble`` and ``version`` form one ensemble release; the
members are averaged by :func:`neuronav.analysis.inference.segment`. ``resolve(None, task)`` gives
the newest shipped ensemble of the task (or, lacking one, the newest shipped model).

Importing this package never imports torch.

Errors (all :class:`neuronav.errors.NeuroNavError`)::

    ModelError
    ├── ModelNotFoundError        no model / ensemble of that name (the message lists the available ones)
    ├── ModelCardError            a card that is not valid (names the card file and the problem)
    ├── ModelIntegrityError       the file's sha256 differs from its card (names file, expected, found)
    └── ModelRegistrationError    a model that cannot be registered (shapes, conflicts, missing torch)
"""

from __future__ import annotations

from neuronav.analysis.models.bundle import OutputTransform
from neuronav.analysis.models.cards import (
    BRATS_LABELS,
    CLINICAL_USE_TEXT,
    SEQUENCES,
    WORKING_GRID_SPACE,
    ModelCard,
    Task,
    TensorSpec,
    card_markdown,
    file_sha256,
    parse_card,
    read_card,
    write_card,
)
from neuronav.analysis.models.catalogue import (
    CardProblem,
    RegisteredModel,
    Where,
    list_models,
    model_rows,
    scan_models,
    select_models,
    shipped_models_dir,
    user_models_dir,
    version_key,
)
from neuronav.analysis.models.errors import (
    ModelCardError,
    ModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelRegistrationError,
)
from neuronav.analysis.models.registration import register_model
from neuronav.analysis.models.runtime import LoadedModel, clear_cache, load_model, load_registered, resolve

__all__ = [
    "BRATS_LABELS",
    "CLINICAL_USE_TEXT",
    "SEQUENCES",
    "WORKING_GRID_SPACE",
    "CardProblem",
    "LoadedModel",
    "ModelCard",
    "ModelCardError",
    "ModelError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "ModelRegistrationError",
    "OutputTransform",
    "RegisteredModel",
    "Task",
    "TensorSpec",
    "Where",
    "card_markdown",
    "clear_cache",
    "file_sha256",
    "list_models",
    "load_model",
    "load_registered",
    "model_rows",
    "parse_card",
    "read_card",
    "register_model",
    "resolve",
    "scan_models",
    "select_models",
    "shipped_models_dir",
    "user_models_dir",
    "version_key",
    "write_card",
]
