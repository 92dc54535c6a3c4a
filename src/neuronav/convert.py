"""Inventory → one NIfTI per series plus a sidecar JSON of metadata (PHI only when asked)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from neuronav.errors import NeuroNavError
from neuronav.ingest.model import Inventory, Problem, Series, Study
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


def convert_inventory(
    inv: Inventory, out_dir: Path, *, include_phi: bool = False
) -> tuple[list[Converted], list[Problem]]:
    """Write every series that forms a volume; return what was written and what could not be."""
    written: list[Converted] = []
    problems: list[Problem] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for n_study, study in enumerate(sorted(inv.studies.values(), key=_study_key), start=1):
        study_dir = out_dir / f"study-{n_study:02d}"
        for series in sorted(
            study.series.values(), key=lambda s: (s.metadata.series_number or 0, s.series_instance_uid)
        ):
            try:
                volume = volume_from_series(series)
            except NeuroNavError as exc:
                problems.append(
                    Problem(
                        f"series {series.metadata.series_number} ({series.metadata.series_description})",
                        getattr(exc, "problem", str(exc)),
                    )
                )
                continue
            seq = series.sequence.sequence.value if series.sequence is not None else "unknown"
            stem = f"{series.metadata.series_number or 0:03d}_{_safe(series.metadata.series_description)}_{seq}"
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


def _study_key(study: Study) -> tuple[str, str]:
    return (study.study_date, study.study_instance_uid)
