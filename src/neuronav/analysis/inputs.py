"""Choose the series of a study to analyse: one volume per sequence (T1, T1c, T2, FLAIR)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neuronav.errors import InputError, NeuroNavError
from neuronav.ingest import Inventory, PatientIdentity, Series, scan
from neuronav.pseudonym import pseudonymise
from neuronav.series import Sequence as Seq
from neuronav.series import identify_inventory, sequence_from_filename
from neuronav.volume import Volume, load_nifti
from neuronav.volume.dicom import volume_from_series

ANALYSED = ("T1", "T1c", "T2", "FLAIR")


@dataclass
class StudyInputs:
    volumes: dict[str, Volume]
    kind: str  # "dicom" | "nifti"
    study_instance_uid: str | None = None
    study_date: str = ""
    series_uids: dict[str, str] = field(default_factory=dict)
    patient_pseudonym: str | None = None  # keyed HMAC of the PatientID (neuronav.pseudonym), never the id
    series: dict[str, Series] = field(default_factory=dict)  # the DICOM series analysed, per sequence
    notes: list[str] = field(default_factory=list)  # series skipped and why (no PHI)
    patient: PatientIdentity | None = None  # PHI from the DICOM, for clinical outputs; never logged


def _rank(series: Series) -> tuple[float, int]:
    verdict = series.sequence
    confidence = float(verdict.confidence) if verdict is not None else 0.0
    m = series.metadata
    return (confidence, series.n_frames * (m.rows or 0) * (m.columns or 0))


def from_inventory(inv: Inventory) -> StudyInputs:
    """Pick the best series of each analysed sequence; raise InputError when nothing fits."""
    if not inv.studies:
        reasons = "; ".join(f"{p.source}: {p.problem}" for p in inv.problems[:5])
        raise InputError(f"no DICOM images found{': ' + reasons if reasons else ''}")
    if len(inv.studies) > 1:
        raise InputError(f"the inputs hold {len(inv.studies)} studies; analyse one study at a time")
    study = next(iter(inv.studies.values()))
    identify_inventory(inv)
    modalities = {s.metadata.modality for s in study.series.values()}
    if "MR" not in modalities:
        raise InputError(
            f"not an MR study (modality {', '.join(sorted(modalities)) or 'unknown'}); NeuroNav analyses brain MRI"
        )
    out = StudyInputs(
        volumes={},
        kind="dicom",
        study_instance_uid=study.study_instance_uid,
        study_date=study.study_date,
        patient_pseudonym=pseudonymise(study.patient.patient_id) if study.patient.patient_id.strip() else None,
        patient=study.patient,
    )
    for name in ANALYSED:
        candidates = [s for s in study.series.values() if s.sequence is not None and s.sequence.sequence.value == name]
        for series in sorted(candidates, key=_rank, reverse=True):
            try:
                out.volumes[name] = volume_from_series(series)
            except NeuroNavError as exc:
                out.notes.append(f"{name} series {series.metadata.series_number}: {getattr(exc, 'problem', exc)}")
                continue
            out.series_uids[name] = series.series_instance_uid
            out.series[name] = series
            break
    found = sorted({s.sequence.sequence.value for s in study.series.values() if s.sequence is not None})
    if not any(k in out.volumes for k in ("T1c", "FLAIR", "T2")):
        raise InputError(
            "the study needs at least one usable T1c, FLAIR or T2 series; found: "
            + (", ".join(found) or "none")
            + ("; " + "; ".join(out.notes) if out.notes else "")
        )
    return out


def from_paths(paths: Sequence[str | Path]) -> StudyInputs:
    """DICOM files / folders / zips; NIfTI files are accepted when their names say the sequence."""
    dicom: list[str | Path] = []
    nifti: dict[str, Path] = {}
    for p in paths:
        name = str(p)
        if name.lower().endswith((".nii", ".nii.gz")):
            verdict = sequence_from_filename(Path(name).name)
            if verdict.sequence == Seq.OTHER:
                raise InputError("cannot tell the sequence from the file name; use --t1/--t1c/--t2/--flair", name)
            key = verdict.sequence.value
            if key in nifti:
                raise InputError(f"two {key} files given ({nifti[key].name} and {Path(name).name}); give one", name)
            nifti[key] = Path(name)
        else:
            dicom.append(p)
    if nifti and dicom:
        raise InputError("give either DICOM or NIfTI inputs, not both")
    if nifti:
        return from_nifti(nifti)
    return from_inventory(scan(dicom))


def from_nifti(files: Mapping[str, str | Path]) -> StudyInputs:
    """NIfTI files given per sequence (keys T1, T1c, T2, FLAIR)."""
    for key in files:
        if key not in ANALYSED:
            raise InputError(f"unknown sequence {key!r}; use one of {', '.join(ANALYSED)}")
    if not any(k in files for k in ("T1c", "FLAIR", "T2")):
        raise InputError("needs at least one of T1c, FLAIR or T2 (given: " + (", ".join(files) or "none") + ")")
    volumes = {key: load_nifti(path) for key, path in files.items()}
    return StudyInputs(volumes=volumes, kind="nifti")
