"""Studies arriving over DICOM (C-STORE), the same for any listener: receipt, stability, hand-over.

1. Who may send: :func:`admit` (the node registry, :func:`neuronav.workflow.nodes.incoming_node`);
   a refusal is audited (``dicom.association``, denied) with its reason.
2. Each instance (:func:`store_instance`) is read with the same header checks as an upload's files
   (:func:`neuronav.ingest.reader.read_header`: truncated, inconsistent or hostile files refused),
   stored encrypted in the object store, and recorded (``dicom_instances``, the study's
   ``dicom_arrivals`` row) in one committed transaction **before** the listener answers Success: an
   instance acknowledged survives a crash. An instance whose SOPInstanceUID was received before is
   counted once (the keyed digest of the UID is the primary key) and answered Success again.
3. A study is complete when no instance of it arrived for ``NEURONAV_DICOM_STABLE_AGE`` seconds
   (:func:`complete_stable`, run by the listener every second, and once at its start,
   :func:`recover_at_start`: what a restart finds waiting is completed from the database, since every
   arrival's ``last_at`` is stored). Its instances are decrypted into a private temporary folder and
   go through :func:`neuronav.workflow.studies.receive_and_analyse` — the function the upload route
   calls — with the node's service account as the actor and the stored instances as the file source
   (:class:`StoredInstances`: no second copy, the objects become the study's upload). The routing rule
   is the upload's validation: a brain MR with a usable T1c, FLAIR or T2 series is analysed; any other
   study stays stored, ``kept`` with the reason (:func:`list_arrivals`).

Late instances: an instance of a study completed already (a late or added series) starts a new arrival
of its own, completed when stable as its own study (the completed arrival is never reopened; tested by
``test_an_instance_after_its_study_was_completed_starts_a_new_arrival``); an instance that arrives while
its arrival is being completed leaves the arrival ``receiving`` and it is completed again when stable.
Not yet handled: joining a late series to the study received before.

UIDs are stored only as keyed digests (:func:`uid_digest`); patient data never reaches a log line or an
audit detail.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel
from pydicom.dataset import Dataset
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neuronav import audit
from neuronav.config import Settings
from neuronav.db.models import DicomArrivalRow, DicomInstanceRow, DicomNodeRow, StoredObjectRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.errors import ConflictError, InputError, NeuroNavError, NotFoundError
from neuronav.ingest.limits import DEFAULT_LIMITS, Limits
from neuronav.ingest.model import Source
from neuronav.ingest.reader import read_header
from neuronav.pseudonym import pseudonym_key
from neuronav.security.access import Actor
from neuronav.storage.errors import UploadTooLargeError
from neuronav.storage.store import ObjectStore
from neuronav.workflow import nodes
from neuronav.workflow.uploads import create_private

log = logging.getLogger(__name__)

INSTANCE_KIND = "dicom-instance"  # stored_objects.kind of an instance not yet part of a study


def uid_digest(settings: Settings, uid: str) -> str:
    """Keyed HMAC-SHA256 of a DICOM UID (hex): UIDs are identifiers, never stored in clear."""
    return hmac.new(
        pseudonym_key(settings), b"uid:" + uid.strip().encode("ascii", "replace"), hashlib.sha256
    ).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


# -- associations -------------------------------------------------------------------------------------


def admit(settings: Settings, calling_ae: str, address: str) -> tuple[DicomNodeRow | None, str]:
    """The node allowed to open this association, or None and the reason (the refusal audited)."""
    with session_scope(settings.database) as db:
        node, reason = nodes.incoming_node(db, calling_ae, address)
        if node is None:
            audit.record(
                db, "dicom.association", outcome="denied", client=f"{calling_ae.strip()[:16]}@{address}"[:100],
                detail={"reason": reason},
            )  # fmt: skip
        else:
            db.expunge(node)
        return node, reason


def association_ended(settings: Settings, node: DicomNodeRow, address: str, summary: dict[str, int | str]) -> None:
    """Audit what one association brought (counts only)."""
    with session_scope(settings.database) as db:
        audit.record(
            db, "dicom.association", actor_id=node.user_id, actor_role="technician",
            client=f"{node.ae_title}@{address}"[:100], target_type="dicom_node", target_id=node.name, detail=summary,
        )  # fmt: skip


# -- instances ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredInstance:
    duplicate: bool  # received before: counted once
    size: int


def store_instance(
    settings: Settings, store: ObjectStore, node: DicomNodeRow, data: bytes, *, limits: Limits = DEFAULT_LIMITS
) -> StoredInstance:
    """Validate one received instance (a Part-10 byte string), store it encrypted and commit its rows;
    only then may the listener answer Success. :class:`InputError` (naming the problem) when it is not
    acceptable DICOM, :class:`UploadTooLargeError` over ``NEURONAV_DICOM_MAX_INSTANCE_BYTES``."""
    if len(data) > settings.dicom_max_instance_bytes:
        raise UploadTooLargeError(
            f"instance of {len(data)} bytes is over the limit of {settings.dicom_max_instance_bytes} bytes"
        )
    header = read_header(Source("C-STORE"), data, limits)
    inst = header.instance
    if not inst.sop_instance_uid or not inst.study_instance_uid:
        raise InputError("C-STORE: the instance has no SOPInstanceUID or StudyInstanceUID")
    sop = uid_digest(settings, inst.sop_instance_uid)
    study = uid_digest(settings, inst.study_instance_uid)
    with session_scope(settings.database) as db:
        if db.get(DicomInstanceRow, sop) is not None:
            return StoredInstance(duplicate=True, size=len(data))
    obj = store.put(data, kind=INSTANCE_KIND)
    try:
        with session_scope(settings.database) as db:
            arrival = db.scalars(
                select(DicomArrivalRow).where(
                    DicomArrivalRow.study_uid_digest == study, DicomArrivalRow.state == "receiving"
                )
            ).first()
            now = _now()
            if arrival is None:
                arrival = DicomArrivalRow(study_uid_digest=study, node_id=node.id, first_at=now, last_at=now)
                db.add(arrival)
                db.flush()
            arrival.instances = (arrival.instances or 0) + 1
            arrival.size_bytes = (arrival.size_bytes or 0) + obj.size
            arrival.last_at = now
            db.add(StoredObjectRow(key=obj.key, kind=INSTANCE_KIND, sha256=obj.sha256, size_bytes=obj.size))
            db.flush()
            db.add(DicomInstanceRow(sop_uid_digest=sop, arrival_id=arrival.id, object_key=obj.key, received_at=now))
    except IntegrityError:  # the same instance stored meanwhile by another association
        store.delete(obj.key, missing_ok=True)
        return StoredInstance(duplicate=True, size=len(data))
    except BaseException:
        store.delete(obj.key, missing_ok=True)
        raise
    return StoredInstance(duplicate=False, size=len(data))


# -- completion -----------------------------------------------------------------------------------------


class StoredInstances:
    """The file source of a completed arrival (:class:`neuronav.workflow.uploads.FileSource`): its
    instances, stored encrypted already, decrypted for the scan; the same objects become the study's upload."""

    throttled = False  # a node is limited per association (instances, bytes), not by the upload rate

    def __init__(self, store: ObjectStore, keys: list[str]) -> None:
        self.store = store
        self.keys = keys
        self.files = len(keys)

    def spool(self, folder: Path, cap: int) -> list[tuple[str, Path]]:
        if not self.keys:
            raise InputError("no instances were received")
        spooled = []
        for n, key in enumerate(self.keys):
            path = folder / f"{n:05d}.dcm"
            with self.store.open(key) as reader, create_private(path) as out:
                for chunk in reader:
                    out.write(chunk)
            spooled.append((f"instance {n + 1}", path))
        return spooled

    def keep(self, store: ObjectStore, spooled: list[tuple[str, Path]]) -> None:
        """Stored already (before each instance was acknowledged)."""

    def discard(self, store: ObjectStore) -> None:
        """Nothing: the instances stay stored (acknowledged to the sender), whatever happens to the study."""

    def attach(self, db: Session, study: StudyRow, field_key: bytes) -> None:
        db.execute(
            update(StoredObjectRow)
            .where(StoredObjectRow.key.in_(self.keys))
            .values(study_id=study.id, kind="upload")
            .execution_options(synchronize_session=False)
        )


def complete_stable(settings: Settings, store: ObjectStore, *, now: datetime | None = None) -> list[str]:
    """Complete every arrival with no instance for the stable age (oldest first); their ids."""
    cutoff = (now or _now()) - timedelta(seconds=settings.dicom_stable_age)
    with session_scope(settings.database) as db:
        due = list(
            db.scalars(
                select(DicomArrivalRow.id)
                .where(DicomArrivalRow.state == "receiving", DicomArrivalRow.last_at <= cutoff)
                .order_by(DicomArrivalRow.last_at)
            )
        )
    for arrival_id in due:
        complete(settings, store, arrival_id)
    return due


def recover_at_start(settings: Settings, store: ObjectStore) -> list[str]:
    """At the listener's start: complete the arrivals that became stable while no listener ran (the
    others are completed by the periodic check as their stable age passes)."""
    done = complete_stable(settings, store)
    if done:
        log.info("dicom: %d studies waiting for their stable age completed at start", len(done))
    return done


def complete(
    settings: Settings, store: ObjectStore, arrival_id: str, *, actor: Actor | None = None, via: str = "dicom"
) -> str:
    """Hand one arrival to the upload workflow; its new state (received, kept, failed). ``actor``: who the
    study is received as (default: the sending node's service account; a person who pulled it from the
    PACS, :mod:`neuronav.workflow.pacs`, receives it as themselves)."""
    from neuronav.workflow import studies

    with session_scope(settings.database) as db:
        arrival = db.get(DicomArrivalRow, arrival_id)
        if arrival is None or arrival.state != "receiving":
            return arrival.state if arrival is not None else "gone"
        count = arrival.instances
        keys = list(
            db.scalars(
                select(DicomInstanceRow.object_key)
                .where(DicomInstanceRow.arrival_id == arrival_id)
                .order_by(DicomInstanceRow.received_at)
            )
        )
        node = db.get(DicomNodeRow, arrival.node_id) if arrival.node_id else None
        state, reason, study_id = "failed", "", None
        try:
            if node is None:
                raise InputError("the node that sent this study was removed from the registry")
            receiver = actor or nodes.node_actor(db, node, client=f"{node.ae_title}@{node.host}")
            out = studies.receive_and_analyse(db, store, settings, receiver, StoredInstances(store, keys), via=via)
            state, study_id = "received", out.study.id
        except (InputError, ConflictError) as exc:  # the routing rule: stored, listed with the reason
            db.rollback()
            state, reason = "kept", str(exc)
        except NeuroNavError as exc:
            db.rollback()
            reason = str(exc)
        except Exception as exc:  # never loop on a study: it is failed with the reason's class, logged
            db.rollback()
            log.exception("dicom: completing arrival %s failed", arrival_id)
            reason = f"unexpected failure ({type(exc).__name__})"
        result = db.execute(
            update(DicomArrivalRow)
            .where(DicomArrivalRow.id == arrival_id, DicomArrivalRow.instances == count)
            .values(state=state, reason=reason[:2000] or None, study_id=study_id)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 1) == 0:  # an instance arrived meanwhile: completed again when stable
            return "receiving"
        if state != "received":
            audit.record(
                db, "dicom.study", outcome="failure", actor_id=node.user_id if node else None,
                actor_role="technician" if node else None, target_type="dicom_arrival", target_id=arrival_id,
                detail={"state": state, "reason": reason[:500], "instances": count},
            )  # fmt: skip
        log.info("dicom: arrival %s (%d instances) %s", arrival_id, count, state)
        return state


class ArrivalOut(BaseModel):
    id: str
    node: str | None
    state: str
    instances: int
    size_bytes: int
    first_at: datetime
    last_at: datetime
    study_id: str | None
    reason: str | None


def list_arrivals(db: Session, *, state: str | None = None, limit: int = 200) -> list[ArrivalOut]:
    """Studies received over DICOM, newest first: receiving, received (with their study), kept (with why)."""
    stmt = select(DicomArrivalRow, DicomNodeRow.name).outerjoin(
        DicomNodeRow, DicomNodeRow.id == DicomArrivalRow.node_id
    )
    if state:
        stmt = stmt.where(DicomArrivalRow.state == state)
    rows = db.execute(stmt.order_by(DicomArrivalRow.last_at.desc()).limit(limit)).all()
    return [
        ArrivalOut(
            id=a.id,
            node=name,
            state=a.state,
            instances=a.instances,
            size_bytes=a.size_bytes,
            first_at=a.first_at,
            last_at=a.last_at,
            study_id=a.study_id,
            reason=a.reason,
        )
        for a, name in rows
    ]


# -- C-FIND: what a node may find here ------------------------------------------------------------------

FIND_LEVELS = ("STUDY", "SERIES", "IMAGE")
FIND_MAX_MATCHES = 500
_STUDY_FILTERS = ("StudyInstanceUID", "PatientID", "AccessionNumber", "StudyDate")


def _wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _matches(found: Dataset, query: Dataset) -> bool:
    """PS3.4 C.2.2.2: single value (exact), wild card (``*``, ``?``) and, for dates, range matching of each
    key the query gives a value; a key the answer lacks is not a reason to leave it out (not matched on)."""
    for elem in query:
        keyword = elem.keyword
        if not keyword or keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or elem.VR == "SQ":
            continue
        wanted = "" if elem.value is None else str(elem.value)
        if not wanted or wanted == "*" or keyword not in found:
            continue
        have = "" if found[keyword].value is None else str(found[keyword].value)
        if elem.VR in ("DA", "TM", "DT") and "-" in wanted:
            lo, _, hi = wanted.partition("-")
            if not have or (lo and have < lo) or (hi and have > hi):
                return False
        elif _wildcard(wanted):
            if not fnmatch.fnmatchcase(have.upper() if keyword == "PatientName" else have,
                                       wanted.upper() if keyword == "PatientName" else wanted):  # fmt: skip
                return False
        elif elem.VR == "UI" and "\\" in wanted:  # list of UID matching
            if have not in wanted.split("\\"):
                return False
        elif have != wanted:
            return False
    return True


def _answer(found: Dataset, query: Dataset, level: str) -> Dataset:
    """The response identifier: each key the query asked for, with the value held (empty when none)."""
    out = Dataset()
    out.SpecificCharacterSet = "ISO_IR 192"
    for elem in query:
        keyword = elem.keyword
        if not keyword or keyword in ("SpecificCharacterSet", "QueryRetrieveLevel"):
            continue
        if keyword in found:
            out[keyword] = found[keyword]
        else:
            out.add_new(elem.tag, elem.VR, None)
    out.QueryRetrieveLevel = level
    return out


def find(settings: Settings, store: ObjectStore, node: DicomNodeRow, address: str, query: Dataset) -> list[Dataset]:
    """A node's C-FIND (Study Root; STUDY, SERIES or IMAGE level) over the studies NeuroNav holds, through
    the same workflow as QIDO-RS (:mod:`neuronav.workflow.dicomweb`). A node finds what its service account
    may see: the studies it sent (``study:images``: the images, never the AI results), so a scanner or a
    PACS can check that a study arrived whole. Audited as ``dicom.find``. :class:`InputError` for a query
    this SCP cannot answer (no or an unknown level, a SERIES / IMAGE query without its StudyInstanceUID)."""
    from neuronav.security.permissions import Permission
    from neuronav.workflow import dicomweb

    level = str(query.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in FIND_LEVELS:
        raise InputError(f"QueryRetrieveLevel {level or '(none)'!r} is not one of {', '.join(FIND_LEVELS)}")
    study_uid = str(query.get("StudyInstanceUID", "") or "").strip()
    if level != "STUDY" and (not study_uid or _wildcard(study_uid) or "\\" in study_uid):
        raise InputError(f"a {level} query needs the one StudyInstanceUID of its study (Study Root, hierarchical)")
    may, action = Permission.STUDY_IMAGES, "dicom.find"
    with session_scope(settings.database) as db:
        actor = nodes.node_actor(db, node, client=f"{node.ae_title}@{address}")
        try:
            if level == "STUDY":
                filters = {}
                for key in _STUDY_FILTERS:
                    value = str(query.get(key, "") or "").strip()
                    if value and not _wildcard(value) and "\\" not in value:
                        filters[key] = value
                rows = dicomweb.search_studies(
                    db, store, settings, actor, filters, FIND_MAX_MATCHES, 0, permission=may, action=action
                )
            elif level == "SERIES":
                rows = dicomweb.search_series(db, store, settings, actor, "", study_uid, permission=may, action=action)
            else:
                series_uid = str(query.get("SeriesInstanceUID", "") or "").strip() or None
                rows = dicomweb.search_instances(
                    db, store, settings, actor, "", study_uid, series_uid, permission=may, action=action
                )
        except NotFoundError:
            rows = []
    found = [Dataset.from_json(r) for r in rows]
    return [_answer(ds, query, level) for ds in found if _matches(ds, query)][:FIND_MAX_MATCHES]


__all__ = [
    "INSTANCE_KIND",
    "ArrivalOut",
    "StoredInstance",
    "StoredInstances",
    "admit",
    "association_ended",
    "complete",
    "complete_stable",
    "find",
    "list_arrivals",
    "recover_at_start",
    "store_instance",
    "uid_digest",
]
