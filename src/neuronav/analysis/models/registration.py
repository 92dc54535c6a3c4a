"""Registering a site's own model: an ONNX file or a MONAI bundle, with its card, into the user models folder.

(Model registration, not image registration: for that see :mod:`neuronav.analysis.registration`.)

The card is completed (``sha256``, ``file``, ``framework``, ``created``) and validated, the network is
opened by ONNX Runtime and checked against the card, and the model is copied into
``<user models dir>/<name>/<version>/`` through a staging folder, so a registration either completes
or leaves nothing behind. A shipped model's name and version cannot be taken. A MONAI bundle is
converted to ONNX first (:mod:`neuronav.analysis.models.bundle`; needs torch).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnxruntime as ort

from neuronav.analysis.models.bundle import OutputTransform, convert_bundle
from neuronav.analysis.models.cards import (
    CARD_JSON,
    CLINICAL_USE_TEXT,
    MODEL_FILE,
    ModelCard,
    file_sha256,
    parse_card,
    write_card,
)
from neuronav.analysis.models.catalogue import shipped_models_dir, user_models_dir
from neuronav.analysis.models.errors import (
    ModelCardError,
    ModelIntegrityError,
    ModelRegistrationError,
)
from neuronav.analysis.models.runtime import check_io, clear_cache

log = logging.getLogger(__name__)


def register_model(
    path: Path,
    card: Path | Mapping[str, Any],
    *,
    user_dir: Path | None = None,
    output_transform: OutputTransform | None = None,
    overwrite: bool = False,
) -> ModelCard:
    """Register a site's own model, with its card, into the user models folder.

    ``path``: an ONNX file, or a MONAI bundle (folder or zip with ``models/model.ts`` and
    ``configs/metadata.json``), which is converted to ONNX (needs torch: the ``train`` extra).
    ``card``: card.json path or dict. ``sha256``, ``file``, ``framework`` and ``created`` are filled
    in; for a bundle, name/version/inputs/outputs/labels default from its metadata. The card must
    say "not for clinical use".
    ``output_transform`` (bundles): what to put after the network so that the ONNX model outputs
    'probabilities': "softmax" (class logits), "brats_regions" (sigmoid logits of tumour core,
    whole tumour, enhancing tumour, as MONAI's BraTS bundle, turned into BraTS label
    probabilities) or "none"; default: "brats_regions" when the metadata says so, else "softmax".
    Returns the card as written.
    """
    card_data = _card_input(card)
    target_base = user_dir if user_dir is not None else user_models_dir()
    path = Path(path)
    if not path.exists():
        raise ModelRegistrationError(f"{path}: no such file or folder")
    with tempfile.TemporaryDirectory(prefix="neuronav-register-") as tmp:
        if path.is_dir() or zipfile.is_zipfile(path):
            onnx_path, card_data = convert_bundle(path, card_data, Path(tmp), output_transform)
        else:
            onnx_path = path
        return _register_onnx(onnx_path, card_data, target_base, overwrite)


def _card_input(card: Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(card, Mapping):
        return dict(card)
    try:
        data = json.loads(Path(card).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelCardError(f"{card}: cannot read the model card: {exc}") from None
    if not isinstance(data, dict):
        raise ModelCardError(f"{card}: a model card must be a JSON object")
    return data


def _register_onnx(onnx_path: Path, data: dict[str, Any], base: Path, overwrite: bool) -> ModelCard:
    where = str(onnx_path)
    digest = file_sha256(onnx_path)
    if "sha256" in data and data["sha256"] != digest:
        raise ModelIntegrityError(onnx_path, str(data["sha256"]), digest)
    data = {**data, "sha256": digest, "file": MODEL_FILE, "framework": "onnx"}
    data.setdefault("created", datetime.now(UTC).strftime("%Y-%m-%d"))
    if CLINICAL_USE_TEXT not in str(data.get("clinical_use", "")).lower():
        raise ModelCardError(
            f"{where}: the card must say {CLINICAL_USE_TEXT!r} in clinical_use; refusing to register the model"
        )
    card = parse_card(data, f"card for {where}")
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelRegistrationError(f"{where}: ONNX Runtime cannot load this file: {exc}") from None
    check_io(session, card, where, ModelRegistrationError)
    if card.task == "segmentation":
        out = card.outputs[0].shape
        if len(out) != 5 or (isinstance(out[1], int) and out[1] != len(card.labels)):
            raise ModelRegistrationError(
                f"{where}: a segmentation model must output (1, {len(card.labels)} labels, x, y, z) "
                f"probabilities, the card declares {out}"
            )
    if (shipped_models_dir() / card.name / card.version / CARD_JSON).exists():
        raise ModelRegistrationError(f"{card.spec} is a shipped model; register under another name or version")
    final = base / card.name / card.version
    if final.exists() and not overwrite:
        raise ModelRegistrationError(f"{final}: {card.spec} is already registered (pass overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{card.version}.", dir=final.parent))
    try:
        shutil.copyfile(onnx_path, staging / MODEL_FILE)
        if file_sha256(staging / MODEL_FILE) != digest:
            raise ModelIntegrityError(staging / MODEL_FILE, digest, file_sha256(staging / MODEL_FILE))
        write_card(staging, card)
        if final.exists():
            old = final.with_name(f".{final.name}.old.{os.getpid()}")
            final.replace(old)
            staging.replace(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.replace(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    clear_cache()
    log.info("registered model %s in %s", card.spec, final)
    return card
