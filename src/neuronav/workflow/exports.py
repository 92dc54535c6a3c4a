"""A study's DICOM, de-identified, as one zip (the service's ``GET /api/studies/{id}/export/deidentified``).

:func:`deidentified_zip`:

1. the study's uploaded files (stored encrypted) are decrypted into a private temporary folder
   (:func:`neuronav.workflow.uploads.restore_upload`, inside ``private_tmp``: 0700, in the data folder);
2. :class:`neuronav.deid.Deidentifier` with the site's pseudonym key (the same pseudonyms and UIDs as
   ``neuronav deid`` and as the study's ``patient_pseudonym``) writes them de-identified — PS3.15
   Basic Profile, with the Retain Longitudinal Temporal Information (Modified Dates) and Retain
   Patient Characteristics Options unless switched off;
3. the decrypted originals are deleted at once, and the de-identified files are zipped as
   ``<new StudyInstanceUID>/<new SeriesInstanceUID>/<new SOPInstanceUID>.dcm`` with
   ``deidentification.json`` (the run's PHI-free summary: counts, method, warnings).

The caller streams ``export.zip_path`` and removes ``export.folder`` afterwards (it holds only the
zip by then); on any error the folder is removed here. Nothing is logged but counts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.deid import Deidentifier
from neuronav.errors import InputError
from neuronav.pseudonym import pseudonym_key
from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.storage.store import ObjectStore
from neuronav.workflow.access import audit_event, authorize_object
from neuronav.workflow.uploads import private_tmp, restore_upload

SUMMARY_NAME = "deidentification.json"


@dataclass(frozen=True)
class DeidentifiedExport:
    folder: Path  # the private temporary folder: remove it when the zip has been sent
    zip_path: Path
    summary: dict[str, Any]  # Deidentifier report summary: counts, method, warnings (no PHI)
    sha256: str  # of the zip
    size_bytes: int


def deidentified_zip(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    study_id: str,
    *,
    retain_dates: bool = True,
    retain_patient_characteristics: bool = True,
) -> DeidentifiedExport:
    """De-identify the study's stored DICOM into a zip in a new private temporary folder."""
    folder = private_tmp(settings, "deid-")
    try:
        originals = folder / "in"
        originals.mkdir()
        restore_upload(db, store, study_id, originals)
        out = folder / "out"
        deidentifier = Deidentifier(
            pseudonym_key(settings),
            retain_dates=retain_dates,
            retain_patient_characteristics=retain_patient_characteristics,
        )
        report = deidentifier.files([originals], out)
        shutil.rmtree(originals)  # the decrypted originals are not kept a moment longer
        if report.written == 0:
            raise InputError(
                f"study {study_id} holds no DICOM object that can be de-identified "
                f"({len(report.refused)} refused, {len(report.skipped)} skipped)"
            )
        summary = {**report.summary(), "options": deidentifier.options}
        zip_path = folder / "deidentified.zip"
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for path in sorted(report.outputs):
                zf.write(path, path.relative_to(out).as_posix())
            zf.writestr(SUMMARY_NAME, json.dumps(summary, indent=1))
        shutil.rmtree(out)
        digest = hashlib.sha256()
        with open(zip_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return DeidentifiedExport(folder, zip_path, summary, digest.hexdigest(), zip_path.stat().st_size)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def export_deidentified(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    study_id: str,
    *,
    retain_dates: bool = True,
    retain_patient_characteristics: bool = True,
) -> DeidentifiedExport:
    """:func:`deidentified_zip` for ``actor`` (``study:export_deidentified`` on the study), audited with
    the options, counts and the zip's SHA-256 (no patient data)."""
    from neuronav.workflow.studies import load_study, study_object

    study = load_study(db, study_id)
    authorize_object(db, actor, Permission.STUDY_EXPORT_DEIDENTIFIED, study_object(study))
    export = deidentified_zip(
        db,
        store,
        settings,
        study.id,
        retain_dates=retain_dates,
        retain_patient_characteristics=retain_patient_characteristics,
    )
    summary = export.summary
    audit_event(
        db,
        actor,
        "study.export_deidentified",
        target_type="study",
        target_id=study.id,
        detail={
            "retain_dates": retain_dates,
            "retain_patient_characteristics": retain_patient_characteristics,
            "files": summary["written"],
            "series": summary["series"],
            "refused": summary["refused"],
            "skipped": summary["skipped"],
            "bytes": export.size_bytes,
            "sha256": export.sha256,
        },
    )
    return export


__all__ = ["SUMMARY_NAME", "DeidentifiedExport", "deidentified_zip", "export_deidentified"]
