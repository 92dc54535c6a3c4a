"""Choose the series of a study to analyse: one volume per sequence (T1, T1c, T2, FLAIR)."""

from __future__ import annotations

import re
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
    files: dict[str, str] = field(default_factory=dict)  # NIfTI: the file read for each sequence


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


_NIFTI_EXT = (".nii", ".nii.gz")
# files that travel with NIfTI data sets (BIDS sidecars, BraTS notes) and are not images
_SIDECARS = (".json", ".tsv", ".txt", ".md", ".bval", ".bvec", ".csv", ".pdf", ".png", ".jpg")
_LABEL_SUFFIXES = {"seg", "mask", "label", "dseg"}
# BIDS suffixes of images NeuroNav does not analyse (functional, diffusion, field maps, other anatomy):
# in a subject's folder they are left out with a note, not an error
_BIDS_OTHER = {
    "bold",
    "sbref",
    "epi",
    "phasediff",
    "phase1",
    "phase2",
    "magnitude",
    "magnitude1",
    "magnitude2",
    "fieldmap",
    "asl",
    "m0scan",
    "pet",
    "dwi",
    "cbv",
    "t2starw",
    "t2star",
    "pdw",
    "pd",
    "pdt2",
    "angio",
    "unit1",
    "mp2rage",
    "inplanet1",
    "inplanet2",
    "swi",
    "mese",
    "megre",
    "tb1map",
    "tb1tfl",
    "tb1rfm",
    "tb1srge",
}


def _is_nifti(name: str) -> bool:
    return name.lower().endswith(_NIFTI_EXT)


def _stem(name: str) -> str:
    base = Path(name).name
    return base[: -len(".nii.gz")] if base.lower().endswith(".nii.gz") else base[: -len(".nii")]


def _case_of(name: str) -> str:
    """The case / subject part of a BraTS or BIDS file name (all but its last '_'/'-' part)."""
    stem = _stem(name)
    bids = re.match(r"(sub-[A-Za-z0-9]+)(_ses-[A-Za-z0-9]+)?", stem)
    if bids:  # BIDS: the subject and session entities; acq-/run-/ce- entities tell files of one visit apart
        return bids.group(0)
    cut = max(stem.rfind("_"), stem.rfind("-"))
    return stem[:cut] if cut > 0 else ""


@dataclass(frozen=True)
class NiftiFile:
    """One NIfTI input: where it is (a path, or a member of a zip archive) and its shown name."""

    shown: str  # the file name as the user knows it (no server paths)
    path: Path | None = None
    zip_path: str | None = None
    member: str | None = None


def _collect(paths: Sequence[str | Path]) -> tuple[list[NiftiFile], list[str | Path], list[str]]:
    """Split the user's paths into NIfTI files (also inside folders and zips) and DICOM candidates."""
    from neuronav.ingest.model import Problem
    from neuronav.ingest.sources import is_zip, iter_sources

    nifti: list[NiftiFile] = []
    others: list[str | Path] = []
    problems: list[Problem] = []
    for p in paths:
        name = str(p)
        if _is_nifti(name) and not Path(name).is_dir():
            nifti.append(NiftiFile(shown=Path(name).name, path=Path(name)))
            continue
        if not (Path(name).is_dir() or is_zip(name)):
            others.append(p)
            continue
        found_here: list[NiftiFile] = []
        rest = 0
        for src in iter_sources([name], problems):
            member_name = src.member or src.path
            if _is_nifti(member_name):
                if src.member:
                    found_here.append(NiftiFile(shown=src.member, zip_path=src.path, member=src.member))
                else:
                    rel = Path(src.path).relative_to(name) if Path(name).is_dir() else Path(src.path).name
                    found_here.append(NiftiFile(shown=str(rel), path=Path(src.path)))
            elif not member_name.lower().endswith(_SIDECARS):
                rest += 1
        nifti.extend(found_here)
        if rest or not found_here:
            others.append(p)
    refused = [f"{pr.source}: {pr.problem}" for pr in problems if _is_nifti(pr.source)]
    return nifti, others, refused


def nifti_content(paths: Sequence[str | Path]) -> tuple[list[NiftiFile], bool]:
    """The NIfTI files under ``paths`` (folders and zips looked into), and whether anything else that
    could be DICOM lies beside them."""
    nifti, others, _ = _collect(paths)
    return nifti, bool(others)


def nifti_digest(files: Sequence[NiftiFile]) -> str:
    """SHA-256 over the sorted SHA-256 of each NIfTI file's bytes: the same files → the same digest
    (the file names and the archive around them do not count)."""
    import hashlib

    from neuronav.ingest.model import Source
    from neuronav.ingest.sources import SourceReader

    digests = []
    with SourceReader() as reader:
        for f in files:
            if f.path is not None:
                h = hashlib.sha256()
                with open(f.path, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
                digests.append(h.hexdigest())
            else:
                assert f.zip_path is not None and f.member is not None
                digests.append(hashlib.sha256(reader.read(Source(f.zip_path, f.member))).hexdigest())
    outer = hashlib.sha256(b"nifti\n")
    for d in sorted(digests):
        outer.update(d.encode("ascii") + b"\n")
    return outer.hexdigest()


def classify_nifti(files: Sequence[NiftiFile]) -> tuple[dict[str, NiftiFile], list[str]]:
    """Which file is which sequence, from the names (BraTS 2018–2021 and 2023, BIDS, free text).

    Label files (``*seg*``, ``*mask*``, ``*dseg*``) and sequences not analysed (DWI, ADC, SWI) are
    left out with a note; a name that says no sequence, two files of one sequence, or files of
    several cases / subjects raise :class:`InputError` naming the files.
    """
    chosen: dict[str, list[NiftiFile]] = {}
    notes: list[str] = []
    unknown: list[str] = []
    for f in files:
        stem = _stem(f.shown).lower()
        last = re.split(r"[_\-.]", stem)[-1]
        if last in _LABEL_SUFFIXES or re.search(r"(^|[_\-.])seg([_\-.]|$)", stem):
            notes.append(f"{f.shown}: a label file, not an image; ignored")
            continue
        if Path(f.shown).name.startswith("sub-") and last in _BIDS_OTHER:
            notes.append(f"{f.shown}: BIDS '{last}' is not analysed; ignored")
            continue
        verdict = sequence_from_filename(Path(f.shown).name)
        key = verdict.sequence.value
        if verdict.sequence == Seq.OTHER:
            unknown.append(f.shown)
        elif key not in ANALYSED:
            notes.append(f"{f.shown}: {key} is not analysed; ignored")
        else:
            chosen.setdefault(key, []).append(f)
    if unknown:
        raise InputError(
            "cannot tell the sequence from the file name of "
            + ", ".join(sorted(unknown))
            + "; name the files like BraTS (…_t1, _t1ce, _t2, _flair or …-t1n, -t1c, -t2w, -t2f) or BIDS "
            "(…_T1w, _ce-gadolinium_T1w, _T2w, _FLAIR), or use --t1/--t1c/--t2/--flair"
        )
    per_case: dict[str, int] = {}
    for group in chosen.values():
        for f in group:
            per_case[_case_of(f.shown)] = per_case.get(_case_of(f.shown), 0) + 1
    cases = sorted(c for c, n in per_case.items() if c and n > 1)  # cases with several sequences each
    several = [k for k, group in chosen.items() if len(group) > 1]
    if several:
        detail = "; ".join(f"{k}: {', '.join(sorted(f.shown for f in chosen[k]))}" for k in several)
        if len(cases) > 1:
            raise InputError(
                f"the inputs hold {len(cases)} cases or subjects ({', '.join(cases[:5])}); analyse one at a time "
                f"({detail})"
            )
        key = several[0]
        names = sorted(f.shown for f in chosen[key])
        raise InputError(f"two {key} files given ({' and '.join(names[:2])}); give one ({detail})")
    out = {k: group[0] for k, group in chosen.items()}
    if not any(k in out for k in ("T1c", "FLAIR", "T2")):
        found = ", ".join(f"{k} ← {f.shown}" for k, f in sorted(out.items())) or "no image of a known sequence"
        raise InputError(f"the NIfTI inputs need at least one of T1c, FLAIR or T2; found {found}")
    return out, notes


def _load(f: NiftiFile, scratch: Path) -> Volume:
    if f.path is not None:
        return load_nifti(f.path)
    from neuronav.ingest.model import Source
    from neuronav.ingest.sources import SourceReader

    assert f.zip_path is not None and f.member is not None
    with SourceReader() as reader:
        data = reader.read(Source(f.zip_path, f.member))
    target = scratch / Path(f.member).name
    target.write_bytes(data)
    try:
        return load_nifti(target)
    finally:
        target.unlink(missing_ok=True)


def from_paths(paths: Sequence[str | Path]) -> StudyInputs:
    """DICOM files / folders / zips, or NIfTI files / folders / zips whose file names say the sequence
    (a BraTS case folder, a BIDS ``anat`` folder, files named after their sequence)."""
    nifti, dicom, refused = _collect(paths)
    if nifti and dicom:
        raise InputError(
            "give either DICOM or NIfTI inputs, not both (NIfTI: "
            + ", ".join(sorted(f.shown for f in nifti)[:4])
            + f"; other: {', '.join(str(d) for d in dicom[:2])})"
        )
    if nifti:
        chosen, notes = classify_nifti(nifti)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="neuronav-nifti-") as scratch:
            volumes = {key: _load(f, Path(scratch)) for key, f in chosen.items()}
        out = StudyInputs(volumes=volumes, kind="nifti", notes=notes + refused)
        out.files = {key: f.shown for key, f in sorted(chosen.items())}
        return out
    return from_inventory(scan(dicom))


def from_nifti(files: Mapping[str, str | Path]) -> StudyInputs:
    """NIfTI files given per sequence (keys T1, T1c, T2, FLAIR)."""
    for key in files:
        if key not in ANALYSED:
            raise InputError(f"unknown sequence {key!r}; use one of {', '.join(ANALYSED)}")
    if not any(k in files for k in ("T1c", "FLAIR", "T2")):
        raise InputError("needs at least one of T1c, FLAIR or T2 (given: " + (", ".join(files) or "none") + ")")
    volumes = {key: load_nifti(path) for key, path in files.items()}
    return StudyInputs(volumes=volumes, kind="nifti", files={k: Path(v).name for k, v in files.items()})
