"""DICOMweb over the studies NeuroNav holds: QIDO-RS (search), WADO-RS (retrieve, metadata), STOW-RS (store).

The same access rules as the API: querying and retrieving need ``study:read`` on each study (a
technician, who may not read studies, gets 403; a break-glass limited to one study finds that one
only); the AI results (SEG, SR, Encapsulated PDF of the latest report) are part of a study only for
those who may read its AI results (:func:`~neuronav.security.access.ai_results_open`: a neurologist
sees them once signed). Every query and retrieval is audited. STOW-RS stores through
:func:`neuronav.workflow.studies.receive_and_analyse`, the function of the HTTP upload and the DICOM
listener: one study per request, validated whole, stored encrypted, its analysis started.

What a study holds is read from its stored (encrypted) upload, decrypted into a private temporary
folder for the request; result objects are written by the report writers with UIDs derived from the
report's content (:func:`neuronav.report._dicom_common.result_uid`), so a query and a later retrieval
name the same instances, and are kept in a small in-process cache keyed by that content.
"""

from __future__ import annotations

import hashlib
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import AnalysisRow, StudyRow
from neuronav.errors import InputError, NotFoundError, ReportError
from neuronav.ingest import scan
from neuronav.pseudonym import pseudonymise
from neuronav.security.access import Actor, ai_results_open
from neuronav.security.permissions import Permission
from neuronav.storage.store import ObjectStore
from neuronav.workflow import reports
from neuronav.workflow.access import audit_event, authorize_object
from neuronav.workflow.identity import patient_of
from neuronav.workflow.studies import UploadOut, may_access, receive_and_analyse, study_object
from neuronav.workflow.uploads import Upload, UploadedFiles, private_tmp, remove_tmp, restore_upload

RESULT_FORMATS = ("seg", "sr", "epdf")  # the DICOM results a study carries for readers of its AI results
MAX_SCANNED = 5000  # studies examined by one search (newest first)
STUDY_FILTERS = frozenset({"StudyInstanceUID", "PatientID", "AccessionNumber", "StudyDate"})


@dataclass(frozen=True)
class HeldInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    path: Path  # a file in the request's private folder
    header: Dataset  # without pixel data


@dataclass
class Retrieved:
    """The instances of one retrieval, as files in a private folder the caller removes with :meth:`close`."""

    folder: Path
    instances: list[HeldInstance]

    def close(self) -> None:
        remove_tmp(self.folder)


# -- which studies --------------------------------------------------------------------------------


def _readable(actor: Actor, study: StudyRow, permission: Permission = Permission.STUDY_READ) -> bool:
    return may_access(actor, study, permission)


def _uid_digest(uid: str) -> str:
    return pseudonymise(uid)[4:]  # as stored by neuronav.workflow.uploads


def study_by_uid(db: Session, actor: Actor, study_uid: str, permission: Permission = Permission.STUDY_READ) -> StudyRow:
    """The newest held study with this StudyInstanceUID that ``actor`` may read (``permission``: a DICOM
    node's C-FIND asks ``study:images``, the studies it sent) — 403 audited when it is held but not
    readable by them, 404 when not held."""
    if not study_uid.strip():
        raise InputError("no StudyInstanceUID given")
    rows = db.scalars(
        select(StudyRow)
        .where(StudyRow.study_uid_digest == _uid_digest(study_uid))
        .order_by(StudyRow.uploaded_at.desc())
    ).all()
    if not rows:
        raise NotFoundError(f"no study {study_uid} is held")
    for row in rows:
        if _readable(actor, row, permission):
            return row
    authorize_object(db, actor, permission, study_object(rows[0]))  # raises, audited
    raise NotFoundError(f"no study {study_uid} is held")  # pragma: no cover - authorize_object raised


def _date_matches(value: str | None, wanted: str) -> bool:
    if "-" in wanted:
        lo, _, hi = wanted.partition("-")
        return bool(value) and (not lo or value >= lo) and (not hi or value <= hi)  # type: ignore[operator]
    return value == wanted


def search_studies(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    filters: dict[str, str],
    limit: int,
    offset: int,
    *,
    permission: Permission = Permission.STUDY_READ,
    action: str = "dicomweb.query",
) -> list[dict[str, Any]]:
    """QIDO-RS studies (and a DICOM node's C-FIND, :func:`neuronav.workflow.dicom.find`): the studies
    ``actor`` holds ``permission`` on matching ``filters`` (exact values; StudyDate also a ``from-to``
    range), newest first, as DICOM JSON. Unknown filter keys are refused by the route."""
    query = select(StudyRow).order_by(StudyRow.uploaded_at.desc()).limit(MAX_SCANNED)
    if uid := filters.get("StudyInstanceUID"):
        query = query.where(StudyRow.study_uid_digest == _uid_digest(uid))
    found: list[dict[str, Any]] = []
    skipped = 0
    for row in db.scalars(query):
        if not _readable(actor, row, permission):
            continue
        if "StudyDate" in filters and not _date_matches(row.study_date, filters["StudyDate"]):
            continue
        ds = _study_dataset(store, settings, row)
        if any(str(ds.get(k, "")) != v for k, v in filters.items() if k in ("PatientID", "AccessionNumber")):
            continue
        if skipped < offset:
            skipped += 1
            continue
        found.append(ds.to_json_dict())
        if len(found) >= limit:
            break
    audit_event(db, actor, action, detail={"level": "study", "results": len(found)})
    db.commit()
    return found


def _study_dataset(store: ObjectStore, settings: Settings, row: StudyRow) -> Dataset:
    from neuronav.storage import decrypt_field

    key = store.field_key()
    ds = Dataset()
    ds.StudyInstanceUID = decrypt_field(row.study_uid_enc, key, "studies.study_uid") if row.study_uid_enc else ""
    patient = patient_of(store, row, settings)
    ds.PatientName = patient.name if patient and patient.name else ""
    ds.PatientID = patient.mrn if patient and patient.mrn else ""
    if patient and patient.mrn_issuer:
        ds.IssuerOfPatientID = patient.mrn_issuer
    ds.PatientBirthDate = patient.birth_date if patient and patient.birth_date else ""
    ds.PatientSex = patient.sex if patient and patient.sex else ""
    ds.AccessionNumber = patient.accession_number if patient and patient.accession_number else ""
    ds.ReferringPhysicianName = patient.referring_physician if patient and patient.referring_physician else ""
    ds.StudyDate = row.study_date or ""
    ds.StudyDescription = row.description or ""
    ds.ModalitiesInStudy = ["MR"]
    ds.NumberOfStudyRelatedInstances = row.n_files
    return ds


# -- what a study holds ---------------------------------------------------------------------------

_cache_lock = threading.Lock()
_results_cache: OrderedDict[str, list[bytes]] = OrderedDict()
RESULTS_CACHED = 8  # reports whose DICOM results are kept in memory


def _result_objects(db: Session, store: ObjectStore, settings: Settings, actor: Actor, study: StudyRow) -> list[bytes]:
    """The DICOM results of the study's latest report (SEG, SR, Encapsulated PDF; what the report has),
    or none when ``actor`` may not read its AI results or there is no report yet."""
    row = reports.for_study(db, study.id)
    if row is None or not ai_results_open(actor, row.status):
        return []
    report = reports.read(db, store, actor, row.id)
    key = hashlib.sha256(report.pseudonymous().model_dump_json().encode("utf-8")).hexdigest()
    with _cache_lock:
        if key in _results_cache:
            _results_cache.move_to_end(key)
            return _results_cache[key]
    analysis = db.get(AnalysisRow, row.analysis_id)
    if analysis is None:
        return []
    made: list[bytes] = []
    folder = private_tmp(settings, "dicomweb-results-")
    try:
        for n, fmt in enumerate(RESULT_FORMATS):
            sub = folder / str(n)
            sub.mkdir()
            try:
                paths = reports.export(db, settings, report, analysis, fmt, sub)
            except ReportError:
                continue  # e.g. no SEG for a study without a tumour: the report says so
            made.extend(p.read_bytes() for p in paths)
    finally:
        remove_tmp(folder)
    with _cache_lock:
        _results_cache[key] = made
        while len(_results_cache) > RESULTS_CACHED:
            _results_cache.popitem(last=False)
    return made


def _instances(folder: Path) -> Iterator[tuple[Path, Dataset]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            try:
                yield path, pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:
                continue


@contextmanager
def _opened(db: Session, store: ObjectStore, settings: Settings, actor: Actor, study: StudyRow) -> Iterator[Retrieved]:
    folder = private_tmp(settings, "dicomweb-")
    held = Retrieved(folder, [])
    try:
        upload = folder / "upload"
        upload.mkdir()
        restore_upload(db, store, study.id, upload)
        files = folder / "files"
        files.mkdir()
        inventory = scan([upload])
        for inv_study in inventory.studies.values():
            for series in inv_study.series.values():
                for inst in series.instances:
                    target = files / f"{len(held.instances):06d}.dcm"
                    if inst.source.member:
                        with zipfile.ZipFile(inst.source.path) as zf, zf.open(inst.source.member) as src:
                            target.write_bytes(src.read())
                    else:
                        target.write_bytes(Path(inst.source.path).read_bytes())
                    header = pydicom.dcmread(target, stop_before_pixels=True)
                    held.instances.append(
                        HeldInstance(
                            inst.study_instance_uid, inst.series_instance_uid, inst.sop_instance_uid, target, header
                        )
                    )
        results = folder / "results"
        results.mkdir()
        for n, data in enumerate(_result_objects(db, store, settings, actor, study)):
            path = results / f"{n:03d}.dcm"
            path.write_bytes(data)
            header = pydicom.dcmread(path, stop_before_pixels=True)
            held.instances.append(
                HeldInstance(
                    str(header.StudyInstanceUID),
                    str(header.SeriesInstanceUID),
                    str(header.SOPInstanceUID),
                    path,
                    header,
                )
            )
        yield held
    except BaseException:
        held.close()
        raise


def _select(held: Retrieved, series_uid: str | None, sop_uid: str | None) -> list[HeldInstance]:
    chosen = [
        i
        for i in held.instances
        if (series_uid is None or i.series_uid == series_uid) and (sop_uid is None or i.sop_uid == sop_uid)
    ]
    if not chosen:
        what = f"instance {sop_uid}" if sop_uid else f"series {series_uid}"
        raise NotFoundError(f"the study holds no {what}")
    return chosen


def retrieve(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    *,
    permission: Permission = Permission.STUDY_READ,
    action: str = "dicomweb.retrieve",
) -> Retrieved:
    """WADO-RS: the instances of a study, series or instance as files (audited as ``action``); the
    caller closes it. ``permission``: see :func:`study_by_uid`."""
    study = study_by_uid(db, actor, study_uid, permission)
    with _opened(db, store, settings, actor, study) as held:
        held.instances = _select(held, series_uid, sop_uid)
        audit_event(
            db,
            actor,
            action,
            target_type="study",
            target_id=study.id,
            detail={
                "instances": len(held.instances),
                "level": "instance" if sop_uid else "series" if series_uid else "study",
            },
        )
        db.commit()
        return held


def _bulk_uri(base: str) -> Any:
    def handler(elem: Any) -> str:
        return base  # large values (pixel data): the instance itself, by WADO-RS

    return handler


def metadata(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    base_url: str,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[dict[str, Any]]:
    """WADO-RS metadata: each instance's attributes as DICOM JSON, large values by reference."""
    held = retrieve(db, store, settings, actor, study_uid, series_uid, sop_uid)
    try:
        out = []
        for inst in held.instances:
            uri = f"{base_url}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"
            out.append(inst.header.to_json_dict(bulk_data_threshold=4096, bulk_data_element_handler=_bulk_uri(uri)))
        return out
    finally:
        held.close()


SERIES_KEYS = ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "SOPClassUID")


def search_series(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    base_url: str,
    study_uid: str,
    *,
    permission: Permission = Permission.STUDY_READ,
    action: str = "dicomweb.retrieve",
) -> list[dict[str, Any]]:
    """QIDO-RS series of one study (source series and, for readers of the AI results, the results)."""
    held = retrieve(db, store, settings, actor, study_uid, permission=permission, action=action)
    try:
        series: dict[str, Dataset] = {}
        counts: dict[str, int] = {}
        for inst in held.instances:
            counts[inst.series_uid] = counts.get(inst.series_uid, 0) + 1
            if inst.series_uid in series:
                continue
            ds = Dataset()
            ds.StudyInstanceUID = inst.study_uid
            for key in ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription"):
                if key in inst.header:
                    ds[key] = inst.header[key]
            ds.RetrieveURL = f"{base_url}/studies/{inst.study_uid}/series/{inst.series_uid}"
            series[inst.series_uid] = ds
        for uid, ds in series.items():
            ds.NumberOfSeriesRelatedInstances = counts[uid]
        return [ds.to_json_dict() for ds in series.values()]
    finally:
        held.close()


def search_instances(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    base_url: str,
    study_uid: str,
    series_uid: str | None = None,
    *,
    permission: Permission = Permission.STUDY_READ,
    action: str = "dicomweb.retrieve",
) -> list[dict[str, Any]]:
    """QIDO-RS instances of a study or one of its series."""
    held = retrieve(db, store, settings, actor, study_uid, series_uid, permission=permission, action=action)
    try:
        out = []
        for inst in held.instances:
            ds = Dataset()
            for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "InstanceNumber"):
                if key in inst.header:
                    ds[key] = inst.header[key]
            ds.RetrieveURL = f"{base_url}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"
            out.append(ds.to_json_dict())
        return out
    finally:
        held.close()


# -- STOW-RS --------------------------------------------------------------------------------------


def store_instances(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    base_url: str,
    parts: list[tuple[str, Path]],
    study_uid: str | None = None,
) -> tuple[UploadOut, dict[str, Any]]:
    """STOW-RS: the parts of one request are one study, received as an upload is (``via="stow-rs"``);
    the store response (DICOM JSON: the study's RetrieveURL and the instances referenced). Parts that
    are not application/dicom, or that belong to another study than ``study_uid``, refuse the request."""
    headers: list[Dataset] = []
    for n, (kind, path) in enumerate(parts, start=1):
        if kind != "application/dicom":
            raise InputError(f"part {n} is {kind}; STOW-RS here takes application/dicom instances")
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except Exception as exc:
            raise InputError(f"part {n} is not a DICOM instance: {exc}") from exc
    uids = {str(h.get("StudyInstanceUID", "")) for h in headers}
    if study_uid is not None and uids != {study_uid}:
        raise InputError(f"the instances belong to {len(uids)} other study/studies, not to {study_uid}")
    files = [open(path, "rb") for _, path in parts]  # noqa: SIM115 - closed below
    try:
        received = receive_and_analyse(
            db,
            store,
            settings,
            actor,
            UploadedFiles([Upload(f"stow-{n:06d}.dcm", fh) for n, fh in enumerate(files)]),
            via="stow-rs",
        )
    finally:
        for fh in files:
            fh.close()
    answer = Dataset()
    (uid,) = uids if len(uids) == 1 else (next(iter(uids)),)
    answer.RetrieveURL = f"{base_url}/studies/{uid}"
    referenced = []
    for h in headers:
        item = Dataset()
        item.ReferencedSOPClassUID = h.get("SOPClassUID", "")
        item.ReferencedSOPInstanceUID = h.get("SOPInstanceUID", "")
        item.RetrieveURL = (
            f"{base_url}/studies/{h.StudyInstanceUID}/series/{h.SeriesInstanceUID}/instances/{h.SOPInstanceUID}"
        )
        referenced.append(item)
    answer.ReferencedSOPSequence = referenced
    return received, answer.to_json_dict()


# -- rendered (WADO-RS /rendered) -------------------------------------------------------------------------

RENDERED_TYPES = ("image/jpeg", "image/png")  # the first: the default (PS3.18 8.7.3.5: image/jpeg)


def rendered_type(accept: str | None) -> str | None:
    """The media type of a rendered answer for an Accept header (q-values honoured; ``*/*`` and ``image/*``
    get the default JPEG); None when it accepts none of :data:`RENDERED_TYPES`."""
    if not accept or not accept.strip():
        return RENDERED_TYPES[0]
    best: tuple[float, int, str] | None = None
    for n, part in enumerate(accept.split(",")):
        kind, *params = (p.strip() for p in part.split(";"))
        kind = kind.lower()
        q = 1.0
        for p in params:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        chosen = kind if kind in RENDERED_TYPES else RENDERED_TYPES[0] if kind in ("*/*", "image/*") else None
        if chosen is not None and (best is None or (q, -n) > (best[0], best[1])):
            best = (q, -n, chosen)
    return best[2] if best else None


def render_frame(path: Path, frame: int, media_type: str) -> bytes:
    """One frame (1-based) of an image instance as 8-bit greyscale (or RGB) PNG / JPEG: the modality LUT
    (rescale), then the instance's first window (WindowCenter / WindowWidth), else its value range; a
    MONOCHROME1 image inverted. :class:`InputError` for an instance without pixels or a frame out of range."""
    import io

    import numpy as np
    from PIL import Image
    from pydicom.pixels.processing import apply_modality_lut

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise InputError("this instance has no pixel data to render (a structured report, a document)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= frames:
        raise NotFoundError(f"frame {frame}: this instance has {frames} frame(s)")
    arr = ds.pixel_array
    if frames > 1:
        arr = arr[frame - 1]
    colour = str(ds.get("PhotometricInterpretation", "")).startswith(("RGB", "YBR"))
    if colour:
        if str(ds.PhotometricInterpretation).startswith("YBR"):
            from pydicom.pixels.processing import convert_color_space

            arr = convert_color_space(arr, str(ds.PhotometricInterpretation), "RGB")
        img = np.clip(arr, 0, 255).astype(np.uint8)
        image = Image.fromarray(img, "RGB")
    else:
        values = apply_modality_lut(arr, ds).astype(np.float64)
        if "WindowCenter" in ds and "WindowWidth" in ds:
            centre = ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter
            width = ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth
            lo, hi = float(centre) - float(width) / 2, float(centre) + float(width) / 2
        else:
            lo, hi = float(values.min()), float(values.max())
        scaled = np.clip((values - lo) / max(hi - lo, 1e-9), 0.0, 1.0) * 255.0
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            scaled = 255.0 - scaled
        image = Image.fromarray(np.rint(scaled).astype(np.uint8), "L")
    out = io.BytesIO()
    image.save(out, format="PNG" if media_type == "image/png" else "JPEG", quality=90)
    return out.getvalue()


def rendered(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frame: int,
    media_type: str,
) -> bytes:
    """WADO-RS rendered: one frame of one instance as an image (the access rules and audit of
    :func:`retrieve`)."""
    held = retrieve(db, store, settings, actor, study_uid, series_uid, sop_uid)
    try:
        return render_frame(held.instances[0].path, frame, media_type)
    finally:
        held.close()
