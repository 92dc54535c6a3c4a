"""The configured PACS: search it (C-FIND) and pull a study from it (C-MOVE) into NeuroNav.

Which PACS: ``NEURONAV_PACS_NODE`` names a node of the one DICOM node registry
(:mod:`neuronav.workflow.nodes`). It must be registered ``--incoming`` (the moved instances arrive at
NeuroNav's listener over C-STORE, from the PACS's AE title and host), and the PACS must know NeuroNav's
AE title (``NEURONAV_DICOM_AE_TITLE``) as a move destination (Orthanc: ``DicomModalities``).

* :func:`search`: technicians and radiologists search the PACS from the worklist (patient id, name,
  accession number, date, modality); each answer says whether NeuroNav holds the study already (and its
  id, to those who may open it). Audited ``pacs.search`` with the keys used, never their values.
* :func:`retrieve`: a person pulls one study: C-MOVE to the listener, then the arrival is completed at
  once (the PACS said the move finished: no stable age to wait) through the same path as an upload
  (:func:`neuronav.workflow.dicom.complete` → :func:`neuronav.workflow.studies.receive_and_analyse`), as
  that person (a technician sees the study as their upload). Audited ``pacs.retrieve``.
* :func:`fetch_study`: the same retrieval for the service itself (the priors of
  :mod:`neuronav.workflow.priors`), received as the PACS node's service account.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import date

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import DicomArrivalRow, DicomNodeRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.errors import ConflictError, InputError, NotFoundError
from neuronav.integrations.dimse import qr
from neuronav.pseudonym import pseudonym_key, pseudonymise
from neuronav.security.access import Actor
from neuronav.storage.store import ObjectStore
from neuronav.workflow import dicom, nodes
from neuronav.workflow.access import audit_event

log = logging.getLogger(__name__)

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
_DAY = r"[0-9]{4}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"
DATE_PATTERN = rf"^({_DAY})?(-({_DAY})?)?$"


def pacs_node(db: Session, settings: Settings) -> DicomNodeRow:
    """The node ``NEURONAV_PACS_NODE`` names (:class:`ConflictError`, 409, when none is configured or it is
    unknown: the service's state, not the request, is in the way)."""
    if not settings.pacs_node:
        raise ConflictError("no PACS is configured: set NEURONAV_PACS_NODE to the name of a registered DICOM node")
    try:
        node = nodes.get_node(db, settings.pacs_node)
    except NotFoundError as exc:
        raise ConflictError(
            f"NEURONAV_PACS_NODE names {settings.pacs_node!r}, which is not a registered DICOM node"
        ) from exc
    db.expunge(node)
    return node


def held_study(db: Session, settings: Settings, study_instance_uid: str) -> StudyRow | None:
    """The study NeuroNav holds with this StudyInstanceUID (its keyed digest), if any."""
    digest = pseudonymise(study_instance_uid, pseudonym_key(settings))[4:]
    return db.scalars(select(StudyRow).where(StudyRow.study_uid_digest == digest)).first()


# -- search --------------------------------------------------------------------------------------------------


class PacsSearchIn(BaseModel):
    """What to look for at the PACS: at least a patient id, a name, an accession number or a study UID."""

    model_config = ConfigDict(extra="forbid")

    patient_id: str = Field(default="", max_length=64, pattern=r"^[^*?\\]*$", description="Exact patient id (MRN).")
    name: str = Field(
        default="",
        max_length=64,
        pattern=r"^[^\\]*$",
        description="Patient name, DICOM style: FAMILY^GIVEN; * wildcard.",
    )
    accession: str = Field(default="", max_length=16, pattern=r"^[^*?\\]*$", description="Exact accession number.")
    date: str = Field(
        default="", max_length=17, pattern=DATE_PATTERN, description="Study date YYYYMMDD or range YYYYMMDD-YYYYMMDD."
    )
    study_uid: str = Field(
        default="", max_length=64, pattern=r"^([0-9]+(\.[0-9]+)*)?$", description="StudyInstanceUID."
    )
    modality: str = Field(
        default="", max_length=16, pattern=r"^[A-Z]{0,16}$", description="Modality in study, e.g. MR."
    )

    def query(self) -> qr.StudyQuery:
        """The C-FIND keys (:class:`InputError` for a day the calendar does not have, or no key at all)."""
        for part in re.findall(r"[0-9]{8}", self.date):
            try:
                date(int(part[:4]), int(part[4:6]), int(part[6:]))
            except ValueError as exc:
                raise InputError(f"date {part} is not a day of the calendar (YYYYMMDD)") from exc
        name = self.name.strip()
        if name and not name.endswith("*"):
            name += "*"  # a prefix, as the worklist's own search treats names
        return qr.StudyQuery(
            patient_id=self.patient_id.strip(),
            patient_name=name,
            accession_number=self.accession.strip(),
            study_date=self.date,
            study_instance_uid=self.study_uid,
            modality=self.modality,
        )


class PacsStudyOut(BaseModel):
    study_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_date: str
    study_description: str
    modalities: list[str]
    series: int | None
    instances: int | None
    held: bool  # NeuroNav holds this study already
    study_id: str | None  # its id in NeuroNav, to those who may open it


class PacsSearchOut(BaseModel):
    pacs: str  # the node's name
    studies: list[PacsStudyOut]
    truncated: bool


def search(db: Session, settings: Settings, actor: Actor, body: PacsSearchIn) -> PacsSearchOut:
    """C-FIND at the configured PACS (newest first); audited ``pacs.search`` (the keys used, no values)."""
    from neuronav.workflow.studies import may_access

    query = body.query()  # InputError when nothing to search for
    node = pacs_node(db, settings)
    keys = sorted(k for k, v in body.model_dump().items() if v)
    db.commit()  # no transaction held while the PACS answers
    try:
        found = qr.find_at_node(settings, node, query)
    except Exception:
        audit_event(db, actor, "pacs.search", outcome="failure", target_type="dicom_node", target_id=node.name,
                    detail={"keys": keys})  # fmt: skip
        db.commit()
        raise
    out = []
    for s in sorted(found.studies, key=lambda s: (s.study_date, s.study_time), reverse=True):
        held = held_study(db, settings, s.study_instance_uid) if s.study_instance_uid else None
        out.append(
            PacsStudyOut(
                study_uid=s.study_instance_uid,
                patient_id=s.patient_id,
                patient_name=s.patient_name,
                patient_birth_date=s.patient_birth_date,
                patient_sex=s.patient_sex,
                accession_number=s.accession_number,
                study_date=s.study_date,
                study_description=s.study_description,
                modalities=s.modalities,
                series=s.series,
                instances=s.instances,
                held=held is not None,
                study_id=held.id if held is not None and may_access(actor, held) else None,
            )
        )
    audit_event(db, actor, "pacs.search", target_type="dicom_node", target_id=node.name,
                detail={"keys": keys, "found": len(out), "truncated": found.truncated})  # fmt: skip
    db.commit()
    return PacsSearchOut(pacs=node.name, studies=out, truncated=found.truncated)


# -- retrieve ------------------------------------------------------------------------------------------------


class PacsRetrieveIn(BaseModel):
    """The study to pull from the PACS."""

    model_config = ConfigDict(extra="forbid")

    study_uid: str = Field(min_length=1, max_length=64, pattern=UID_PATTERN, description="StudyInstanceUID.")


class PacsRetrieveOut(BaseModel):
    pacs: str
    instances: int  # moved by the PACS (sub-operations completed)
    state: str  # received (analysis started), kept (stored, not analysed: reason), failed
    reason: str | None
    study_id: str | None
    analysis_id: str | None


class Fetched(BaseModel):
    instances: int
    state: str
    reason: str | None
    study_id: str | None


def fetch_study(
    settings: Settings,
    store: ObjectStore,
    node: DicomNodeRow,
    study_instance_uid: str,
    *,
    actor: Actor | None = None,
    via: str = "pacs",
    wait_s: float = 30.0,
) -> Fetched:
    """C-MOVE one study from ``node`` to NeuroNav's listener and complete its arrival at once (the same
    path as an upload; ``actor``: who receives it, default the node's service account)."""
    moved = qr.move_from_node(settings, node, study_instance_uid)
    digest = dicom.uid_digest(settings, study_instance_uid)
    deadline = time.monotonic() + wait_s
    while True:
        with session_scope(settings.database) as db:
            arrivals = list(
                db.scalars(
                    select(DicomArrivalRow)
                    .where(DicomArrivalRow.study_uid_digest == digest)
                    .order_by(DicomArrivalRow.last_at.desc())
                )
            )
            receiving = [a.id for a in arrivals if a.state == "receiving"]
            done = [(a.state, a.reason, a.study_id) for a in arrivals if a.state != "receiving"]
            held = held_study(db, settings, study_instance_uid)
            held_id = held.id if held is not None else None
        if receiving or done or held_id or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the listener commits each instance before answering it: rarely needed
    if receiving:
        for arrival_id in receiving:
            dicom.complete(settings, store, arrival_id, actor=actor, via=via)
        with session_scope(settings.database) as db:
            a = db.get(DicomArrivalRow, receiving[0])
            assert a is not None
            return Fetched(instances=moved.completed, state=a.state, reason=a.reason, study_id=a.study_id)
    if held_id is not None:  # every instance had come before: the study is held already
        return Fetched(instances=moved.completed, state="received", reason=None, study_id=held_id)
    if done:
        state, reason, study_id = done[0]
        return Fetched(instances=moved.completed, state=state, reason=reason, study_id=study_id)
    raise InputError(
        f"the PACS reported {moved.completed} instances moved, but none reached NeuroNav's listener: is "
        f"{settings.dicom_ae_title} known to the PACS at this server's address, and the PACS registered --incoming?"
    )


def retrieve(
    db: Session, settings: Settings, store: ObjectStore, actor: Actor, body: PacsRetrieveIn
) -> PacsRetrieveOut:
    """Pull one study from the configured PACS for analysis (C-MOVE → arrival → analysis); audited."""
    from neuronav.workflow.studies import may_access

    node = pacs_node(db, settings)
    db.commit()
    try:
        if not qr.find_at_node(settings, node, qr.StudyQuery(study_instance_uid=body.study_uid)).studies:
            raise NotFoundError(f"the PACS ({node.name}) holds no study with UID {body.study_uid}")
        fetched = fetch_study(settings, store, node, body.study_uid, actor=actor)
    except Exception as exc:
        audit_event(db, actor, "pacs.retrieve", outcome="failure", target_type="dicom_node", target_id=node.name,
                    detail={"error": type(exc).__name__})  # fmt: skip
        db.commit()
        raise
    study = db.get(StudyRow, fetched.study_id) if fetched.study_id else None
    visible = study is not None and may_access(actor, study)
    analysis_id = None
    if visible and study is not None:
        from neuronav.workflow.studies import _latest

        latest = _latest(db, study.id)
        analysis_id = latest.id if latest is not None else None
    audit_event(
        db, actor, "pacs.retrieve", target_type="study" if study else "dicom_node",
        target_id=study.id if study else node.name,
        detail={"pacs": node.name, "instances": fetched.instances, "state": fetched.state},
    )  # fmt: skip
    db.commit()
    return PacsRetrieveOut(
        pacs=node.name,
        instances=fetched.instances,
        state=fetched.state,
        reason=fetched.reason,
        study_id=study.id if visible and study is not None else None,
        analysis_id=analysis_id,
    )


__all__ = [
    "Fetched",
    "PacsRetrieveIn",
    "PacsRetrieveOut",
    "PacsSearchIn",
    "PacsSearchOut",
    "PacsStudyOut",
    "fetch_study",
    "held_study",
    "pacs_node",
    "retrieve",
    "search",
]
