"""Inventory → one NIfTI per series plus a sidecar JSON of metadata (PHI only when asked)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from neuronav.errors import InputError, NeuroNavError
from neuronav.ingest.model import Inventory, Problem, ScannedStudy, Series
from neuronav.volume.dicom import volume_from_series
from neuronav.volume.nifti import save_nifti


@dataclass(frozen=True)
class Converted:
    series_instance_uid: str
    nifti: Path
    sidecar: Path


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")[:48] or "series"


def series_summary(series: Series) -> dict[str, Any]:
    """The sidecar's non-PHI description of a series."""
    verdict = series.sequence
    return {
        "SeriesInstanceUID": series.series_instance_uid,
        "StudyInstanceUID": series.study_instance_uid,
        "n_instances": len(series.instances),
        "n_frames": series.n_frames,
        "metadata": series.metadata.to_dict(),
        "sequence": None
        if verdict is None
        else {
            "sequence": str(verdict.sequence.value),
            "confidence": verdict.confidence,
            "reasons": list(verdict.reasons),
        },
    }


def _short(uid: str) -> str:
    import hashlib

    return hashlib.sha256(uid.encode()).hexdigest()[:8]


def convert_inventory(
    inv: Inventory, out_dir: Path, *, include_phi: bool = False, overwrite: bool = False
) -> tuple[list[Converted], list[Problem]]:
    """Write every series that forms a volume; return what was written and what could not be.

    Study folders are named by study date and a hash of the StudyInstanceUID, so runs on other
    studies never write into each other's folders; a non-empty ``out_dir`` is refused unless
    ``overwrite`` is set. A series that fails is reported and the others are still written.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output path exists and is not a folder", str(out_dir))
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError("output folder is not empty (use --overwrite to replace files in it)", str(out_dir))
    written: list[Converted] = []
    problems: list[Problem] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for study in sorted(inv.studies.values(), key=_study_key):
        study_dir = out_dir / f"study-{study.study_date or 'undated'}-{_short(study.study_instance_uid)}"
        used: set[str] = set()
        for series in sorted(
            study.series.values(), key=lambda s: (s.metadata.series_number or 0, s.series_instance_uid)
        ):
            label = f"series {series.metadata.series_number} ({series.metadata.series_description})"
            try:
                volume = volume_from_series(series)
            except NeuroNavError as exc:
                where = getattr(exc, "path", None) or f"{label} in {Path(series.instances[0].source.path).parent}"
                problems.append(Problem(where, getattr(exc, "problem", str(exc))))
                continue
            except Exception as exc:  # a hostile file must not stop the other series
                problems.append(Problem(label, f"cannot build the volume ({type(exc).__name__}: {exc})"))
                continue
            seq = series.sequence.sequence.value if series.sequence is not None else "unknown"
            stem = f"{series.metadata.series_number or 0:03d}_{_safe(series.metadata.series_description)}_{seq}"
            if stem in used:  # same number and description: keep both, told apart by their UID
                stem = f"{stem}_{_short(series.series_instance_uid)}"
            used.add(stem)
            nifti = save_nifti(volume, study_dir / f"{stem}.nii.gz")
            sidecar_data = series_summary(series)
            sidecar_data["geometry"] = {
                "shape": list(volume.shape),
                "spacing_mm": [round(s, 6) for s in volume.spacing],
                "orientation": volume.orientation_codes,
                "affine_ras": volume.affine.round(6).tolist(),
            }
            if include_phi:
                sidecar_data["patient"] = asdict(study.patient)
            sidecar = study_dir / f"{stem}.json"
            sidecar.write_text(json.dumps(sidecar_data, indent=2, default=str))
            written.append(Converted(series.series_instance_uid, nifti, sidecar))
    return written, problems


def _study_key(study: ScannedStudy) -> tuple[str, str]:
    return (study.study_date, study.study_instance_uid)
