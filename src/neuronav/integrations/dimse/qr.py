"""Query / retrieve SCU (pynetdicom): C-FIND and C-MOVE, Study Root, against a PACS node.

:func:`find_studies` sends one C-FIND (Study Root, STUDY level) with the keys of a :class:`StudyQuery`
and returns each match as a :class:`FoundStudy`. :func:`move_study` asks the PACS to send one study
(C-MOVE, Study Root) to a destination AE title (NeuroNav's own: its listener receives the instances,
which the PACS must know as a DICOM modality, and which must admit the PACS as an ``--incoming`` node)
and returns the final counts (:class:`MoveResult`).

Both raise :class:`~neuronav.integrations.dimse.errors.DicomNetworkError` naming what went wrong: the
PACS unreachable, the association refused (the peer's reason), a timeout, an abort, or a failure status
(C-FIND 0xA700 / 0xA900 / 0xCxxx; C-MOVE 0xA701 / 0xA702 / 0xA801 (move destination unknown) / 0xC000,
or a Warning 0xB000 with sub-operations failed).

Wildcards: DICOM matching has no escape for ``*`` and ``?``; a patient id or accession number holding
one would match other patients' studies, so :class:`StudyQuery` refuses them (:class:`InputError`),
and the callers that link studies to a patient also compare the answers exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from neuronav.config import Settings
from neuronav.db.models import DicomNodeRow
from neuronav.errors import InputError
from neuronav.integrations.dimse.errors import DicomNetworkError
from neuronav.integrations.dimse.scu import Peer, associate

MAX_RESULTS = 500  # a broader query is cut (and said so: FindResult.truncated)
MOVE_DESTINATION_UNKNOWN = 0xA801


@dataclass(frozen=True)
class StudyQuery:
    """The C-FIND keys (empty: not a matching key). ``study_date``: ``YYYYMMDD``, or a range
    ``YYYYMMDD-YYYYMMDD`` / ``-YYYYMMDD`` / ``YYYYMMDD-``. ``patient_name`` may use the ``*`` wildcard."""

    patient_id: str = ""
    patient_name: str = ""
    accession_number: str = ""
    study_date: str = ""
    study_instance_uid: str = ""
    modality: str = ""  # ModalitiesInStudy, e.g. MR

    def __post_init__(self) -> None:
        for name in ("patient_id", "accession_number", "study_instance_uid", "modality"):
            value = getattr(self, name)
            if "*" in value or "?" in value or "\\" in value:
                raise InputError(f"{name.replace('_', ' ')} {value!r}: wildcards are not allowed here")
        if "\\" in self.patient_name:
            raise InputError("patient name: a backslash is not allowed")
        if not any((self.patient_id, self.patient_name.strip("* "), self.accession_number, self.study_instance_uid)):
            raise InputError("give a patient id, a patient name, an accession number or a study UID to search for")

    def identifier(self) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientID = self.patient_id
        ds.IssuerOfPatientID = ""
        ds.PatientName = self.patient_name
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.AccessionNumber = self.accession_number
        ds.StudyDate = self.study_date
        ds.StudyTime = ""
        ds.StudyDescription = ""
        ds.StudyInstanceUID = self.study_instance_uid
        ds.ModalitiesInStudy = self.modality
        ds.NumberOfStudyRelatedSeries = ""
        ds.NumberOfStudyRelatedInstances = ""
        return ds


@dataclass(frozen=True)
class FoundStudy:
    """One study a PACS answered (PHI: never logged)."""

    study_instance_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_date: str
    study_time: str
    study_description: str
    modalities: list[str]
    series: int | None
    instances: int | None


@dataclass(frozen=True)
class FindResult:
    peer: str
    studies: list[FoundStudy] = field(default_factory=list)
    truncated: bool = False


@dataclass(frozen=True)
class MoveResult:
    peer: str
    completed: int
    failed: int
    warning: int
    status: int


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(str(ds.get(keyword, "")).strip())
    except ValueError:
        return None


def _modalities(ds: Dataset) -> list[str]:
    value = ds.get("ModalitiesInStudy", "")
    if value is None or value == "":
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [str(v).strip().upper() for v in items if str(v).strip()]


def found_study(ds: Dataset) -> FoundStudy:
    return FoundStudy(
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        accession_number=_text(ds, "AccessionNumber"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        modalities=_modalities(ds),
        series=_int(ds, "NumberOfStudyRelatedSeries"),
        instances=_int(ds, "NumberOfStudyRelatedInstances"),
    )


@contextmanager
def _association(
    peer: Peer, context: str, *, calling_ae: str, acse_timeout: float, dimse_timeout: float, network_timeout: float
) -> Iterator[Association]:
    where = f"{peer.ae_title}@{peer.host}:{peer.port}"
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = acse_timeout, dimse_timeout, network_timeout
    ae.add_requested_context(context)
    assoc = associate(ae, peer)
    try:
        if not any(c.abstract_syntax == context for c in assoc.accepted_contexts):
            raise DicomNetworkError(f"{where} does not offer the Study Root query/retrieve service", failure="refused")
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _no_answer(assoc: Association, where: str, what: str, timeout: float) -> DicomNetworkError:
    if assoc.is_aborted:
        return DicomNetworkError(f"{where} aborted the association during the {what}", failure="aborted")
    return DicomNetworkError(f"{where} sent no {what} response within {timeout:g} s", failure="timeout")


def find_studies(
    peer: Peer,
    query: StudyQuery,
    *,
    calling_ae: str,
    acse_timeout: float = 30.0,
    dimse_timeout: float = 60.0,
    network_timeout: float = 60.0,
    limit: int = MAX_RESULTS,
) -> FindResult:
    """C-FIND (Study Root, STUDY level) at ``peer``: the studies that match ``query`` (at most ``limit``:
    further matches are cancelled, ``truncated``)."""
    where = f"{peer.ae_title}@{peer.host}:{peer.port}"
    found: list[FoundStudy] = []
    truncated = False
    ctx = StudyRootQueryRetrieveInformationModelFind
    with _association(
        peer, ctx, calling_ae=calling_ae, acse_timeout=acse_timeout, dimse_timeout=dimse_timeout,
        network_timeout=network_timeout,
    ) as assoc:  # fmt: skip
        responses = assoc.send_c_find(query.identifier(), ctx)
        for status, identifier in responses:
            if status is None or "Status" not in status:
                raise _no_answer(assoc, where, "C-FIND", dimse_timeout)
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):  # pending: one match
                if identifier is not None:
                    if len(found) >= limit:
                        truncated = True
                        continue  # read on: the rest of the pending answers are dropped
                    found.append(found_study(identifier))
                continue
            if code == 0x0000:
                break
            if code == 0xFE00:  # cancelled
                break
            comment = str(status.get("ErrorComment", "") or "")
            raise DicomNetworkError(
                f"{where} answered C-FIND failure status 0x{code:04X}" + (f" ({comment})" if comment else ""),
                failure="status",
                status=code,
            )
    return FindResult(where, found, truncated)


def move_study(
    peer: Peer,
    study_instance_uid: str,
    *,
    destination_ae: str,
    calling_ae: str,
    acse_timeout: float = 30.0,
    dimse_timeout: float = 600.0,
    network_timeout: float = 600.0,
) -> MoveResult:
    """C-MOVE (Study Root, STUDY level): ``peer`` sends the study to ``destination_ae``. Returns once the
    PACS reports the move finished; :class:`DicomNetworkError` when nothing or not everything moved."""
    if not study_instance_uid or any(c in study_instance_uid for c in "*?\\"):
        raise InputError(f"study UID {study_instance_uid!r} is not a single study UID")
    where = f"{peer.ae_title}@{peer.host}:{peer.port}"
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_instance_uid
    ctx = StudyRootQueryRetrieveInformationModelMove
    final: Dataset | None = None
    with _association(
        peer, ctx, calling_ae=calling_ae, acse_timeout=acse_timeout, dimse_timeout=dimse_timeout,
        network_timeout=network_timeout,
    ) as assoc:  # fmt: skip
        for status, _identifier in assoc.send_c_move(ds, destination_ae, ctx):
            if status is None or "Status" not in status:
                raise _no_answer(assoc, where, "C-MOVE", dimse_timeout)
            if int(status.Status) in (0xFF00,):
                continue
            final = status
            break
    assert final is not None
    code = int(final.Status)
    result = MoveResult(
        where,
        completed=_int(final, "NumberOfCompletedSuboperations") or 0,
        failed=_int(final, "NumberOfFailedSuboperations") or 0,
        warning=_int(final, "NumberOfWarningSuboperations") or 0,
        status=code,
    )
    if code == MOVE_DESTINATION_UNKNOWN:
        raise DicomNetworkError(
            f"{where} does not know the move destination {destination_ae!r}: add it to the PACS's DICOM modalities",
            failure="status",
            status=code,
            result=result,
        )
    if code != 0x0000 or result.failed:
        comment = str(final.get("ErrorComment", "") or "")
        hint = (
            f": either it holds no such study, or it does not know the move destination {destination_ae!r} "
            "(its DICOM modalities)"
            if result.completed == 0 and code != 0x0000
            else ""
        )
        raise DicomNetworkError(
            f"{where} answered C-MOVE status 0x{code:04X} ({result.completed} sent, {result.failed} failed)"
            + (f": {comment}" if comment else "")
            + hint,
            failure="status",
            status=code,
            result=result,
        )
    if result.completed == 0 and result.warning == 0:
        raise DicomNetworkError(f"{where} found nothing to move for this study UID", failure="status", status=code)
    return result


def find_at_node(settings: Settings, node: Peer | DicomNodeRow, query: StudyQuery) -> FindResult:
    """:func:`find_studies` at a registered node as NeuroNav (``NEURONAV_DICOM_AE_TITLE``, its timeouts)."""
    return find_studies(
        Peer(node.ae_title, node.host, node.port),
        query,
        calling_ae=settings.dicom_ae_title,
        acse_timeout=settings.dicom_acse_timeout_s,
        dimse_timeout=settings.dicom_dimse_timeout_s,
        network_timeout=settings.dicom_network_timeout_s,
    )


def move_from_node(settings: Settings, node: Peer | DicomNodeRow, study_instance_uid: str) -> MoveResult:
    """:func:`move_study` from a registered node to NeuroNav's own listener (AE ``NEURONAV_DICOM_AE_TITLE``).
    A move waits for the whole study: the DIMSE timeout is at least 10 minutes."""
    return move_study(
        Peer(node.ae_title, node.host, node.port),
        study_instance_uid,
        destination_ae=settings.dicom_ae_title,
        calling_ae=settings.dicom_ae_title,
        acse_timeout=settings.dicom_acse_timeout_s,
        dimse_timeout=max(settings.dicom_dimse_timeout_s, 600.0),
        network_timeout=max(settings.dicom_network_timeout_s, 600.0),
    )


__all__ = [
    "FindResult",
    "FoundStudy",
    "MoveResult",
    "StudyQuery",
    "find_at_node",
    "find_studies",
    "move_from_node",
    "move_study",
]
