"""The tables of the service. Patient data (PHI) columns hold ciphertext (see ``*_enc``); the audit
log is append-only and hash-chained (:mod:`neuronav.audit`).

::

    users ──< sessions ──○ breakglass_grants    (the open break-glass of a session, with its expiry)
      │
      ├──< studies ──< stored_objects          (uploaded files and results, encrypted at rest)
      │        ├──< study_search_tokens        (keyed blind index of the identity: the worklist search)
      │        ├──< analyses                   (jobs: queued / running / done / failed)
      │        ├──< reports ──< report_versions (every version kept, never overwritten)
      │        ├──< segmentation_versions       (a radiologist's corrections of an analysis's label map)
      │        └──< annotations                (measurements and notes of the viewer)
      └──< audit_events                        (who, role, when, from where, what, outcome; chained)

    throttles                                  (sign-in and registration counters per client address, and
                                                per login name without an account; keys stored as digests)

    dicom_nodes ──○ users                      (the DICOM node registry; each node's service account)
    dicom_arrivals ──< dicom_instances ──○ stored_objects   (studies arriving by C-STORE, until stable)
    orders ──○ studies                          (orders from the RIS / EHR over HL7: ORM, OMI; matched to the
                                                study that answers them; identity encrypted, digests to match)
    hl7_rejected                               (HL7 messages the listener refused, encrypted, for an admin)
    destinations ──< deliveries                 (the outbox: where reports go — HL7 over MLLP, FHIR REST, later
                                                DICOM C-STORE / STOW-RS — and each report version's delivery)

Everything a request decides on lives here, not in the process: any number of server processes
share the throttles and the break-glass grants.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("technician", "radiologist", "neurologist", "admin")
ACCOUNT_STATES = ("pending", "active", "disabled")
STUDY_STATES = ("received", "queued", "running", "done", "failed")
JOB_STATES = ("queued", "running", "done", "failed")


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """The one datetime column type: aware UTC datetimes in, aware UTC datetimes out, on every database.

    PostgreSQL keeps the zone (``timestamp with time zone``); SQLite stores text without one and
    returns naive values, which are read back as UTC here, so no caller ever compares naive with aware.
    A naive datetime written is refused: it would be ambiguous. ISO 8601 text (a backup's rows) is parsed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | str | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # rows copied as text (a backup's dump)
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} written to a UTC column: give it a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}  # noqa: RUF012 (SQLAlchemy API)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # lower-cased
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default="pending")
    password_hash: Mapped[str] = mapped_column(String(200))
    licence_number: Mapped[str | None] = mapped_column(String(100))
    verified_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    verified_at: Mapped[datetime | None]
    totp_secret_enc: Mapped[str | None] = mapped_column(Text)  # encrypted (column-bound AES-GCM)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    throttle: Mapped[dict[str, Any]] = mapped_column(default=dict)  # failed-login state (neuronav.security)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # a one-time password (CLI, demo, admin reset): nothing but the password change until it is changed
    password_must_change: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    sessions: Mapped[list[SessionRow]] = relationship(back_populates="user", cascade="all, delete-orphan")


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the opaque token
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    client: Mapped[str | None] = mapped_column(String(100))  # address the session was opened from
    mfa: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[UserRow] = relationship(back_populates="sessions")


class BreakGlassGrantRow(Base):
    """The open break-glass of one session (at most one; opening another replaces it)."""

    __tablename__ = "breakglass_grants"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    breakglass_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    study_id: Mapped[str | None] = mapped_column(String(32))  # limited to this study (None: every study)
    opened_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ThrottleRow(Base):
    """One throttle counter (:class:`neuronav.security.throttle.ThrottleState`) of a scope and key."""

    __tablename__ = "throttles"

    scope: Mapped[str] = mapped_column(String(20), primary_key=True)  # account | address | registration
    key_digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of scope and key
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    lockouts: Mapped[int] = mapped_column(Integer, default=0)
    last_failure: Mapped[datetime | None] = mapped_column(index=True)  # stale rows are pruned by it


class StudyRow(Base):
    __tablename__ = "studies"
    __table_args__ = (
        Index("ix_studies_uploaded_at", "uploaded_at"),
        Index("ix_studies_state", "state"),
        Index("ix_studies_worklist", "flagged", "uploaded_at"),  # the worklist order: flagged first, newest first
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)  # of the uploaded content (idempotency)
    study_uid_digest: Mapped[str | None] = mapped_column(String(64), index=True)  # keyed HMAC of StudyInstanceUID
    patient_pseudonym: Mapped[str | None] = mapped_column(String(40), index=True)
    patient_name_enc: Mapped[str | None] = mapped_column(Text)
    patient_id_enc: Mapped[str | None] = mapped_column(Text)
    patient_birth_date_enc: Mapped[str | None] = mapped_column(Text)
    # the rest of the identity clinical outputs carry (neuronav.workflow.identity), encrypted likewise
    patient_sex_enc: Mapped[str | None] = mapped_column(Text)
    patient_id_issuer_enc: Mapped[str | None] = mapped_column(Text)
    accession_enc: Mapped[str | None] = mapped_column(Text)
    referring_physician_enc: Mapped[str | None] = mapped_column(Text)
    study_uid_enc: Mapped[str | None] = mapped_column(Text)
    study_date: Mapped[str | None] = mapped_column(String(8))
    description: Mapped[str | None] = mapped_column(String(200))
    sequences: Mapped[dict[str, Any]] = mapped_column(default=dict)  # sequence → series info (no PHI)
    n_files: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(20), default="received")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)  # a tumour was detected
    uploaded_by: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    prior_study_id: Mapped[str | None] = mapped_column(ForeignKey("studies.id"))

    objects: Mapped[list[StoredObjectRow]] = relationship(back_populates="study", cascade="all, delete-orphan")
    analyses: Mapped[list[AnalysisRow]] = relationship(back_populates="study", cascade="all, delete-orphan")


class StudySearchTokenRow(Base):
    """The keyed blind index of a study's identity (:mod:`neuronav.security.blind_index`): HMAC tokens of
    the normalised MRN, accession number and name prefixes, so the worklist search never decrypts a row."""

    __tablename__ = "study_search_tokens"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True, index=True)


class StoredObjectRow(Base):
    __tablename__ = "stored_objects"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # server-generated storage key
    study_id: Mapped[str | None] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))  # upload, findings, segmentation, report-pdf, …
    # the client's file name (PHI: often the patient's name and birth date), encrypted: encrypt_field(name,
    # field key, "stored_objects.name"); never used as a path
    name: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    study: Mapped[StudyRow | None] = relationship(back_populates="objects")


class AnalysisRow(Base):
    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    cache_key: Mapped[str] = mapped_column(String(64), index=True)  # sha256(content, model versions)
    model: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requested_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    seconds: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)  # summary + stored object keys
    # the lease of the process running it (neuronav.workflow.jobs): renewed by its heartbeat; expired → re-queued
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None]

    study: Mapped[StudyRow] = relationship(back_populates="analyses")


class ReportRow(Base):
    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # NN-YYYYMMDD-xxxxxxxx
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    analysis_id: Mapped[str] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer, default=1)  # the current (newest) version
    status: Mapped[str] = mapped_column(String(20), default="preliminary")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[ReportVersionRow]] = relationship(
        back_populates="report", cascade="all, delete-orphan", order_by="ReportVersionRow.version"
    )


class ReportVersionRow(Base):
    __tablename__ = "report_versions"

    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    document_enc: Mapped[str] = mapped_column(Text)  # the report JSON, encrypted (it names the patient's findings)
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))

    report: Mapped[ReportRow] = relationship(back_populates="versions")


class SegmentationVersionRow(Base):
    """A radiologist's correction of an analysis's label map: version 2, 3, … (version 1 is the AI's
    ``segmentation.nii.gz``, kept untouched). The corrected NIfTI is a stored object (encrypted)."""

    __tablename__ = "segmentation_versions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    analysis_id: Mapped[str] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # 2, 3, … per analysis
    parent_version: Mapped[int] = mapped_column(Integer)  # the version it was edited from (1: the AI's)
    object_key: Mapped[str] = mapped_column(String(64))  # the stored label map (stored_objects.key)
    sha256: Mapped[str] = mapped_column(String(64))
    author_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    author_name: Mapped[str] = mapped_column(String(200))  # as the report states it
    author_role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # lesions accepted / rejected, voxels per label
    report_id: Mapped[str | None] = mapped_column(String(20))
    report_version: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("analysis_id", "version"),)


class AnnotationRow(Base):
    __tablename__ = "annotations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(20))  # distance | roi | ellipse | bidimensional | text
    geometry: Mapped[dict[str, Any]] = mapped_column(default=dict)  # RAS mm points, plane, values
    text: Mapped[str | None] = mapped_column(Text)
    include_in_report: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[str | None] = mapped_column(String(32), index=True)
    actor_role: Mapped[str | None] = mapped_column(String(20))
    client: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60), index=True)  # login, study.upload, report.sign, …
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(20))  # success | failure | denied
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)  # never PHI
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


DICOM_ARRIVAL_STATES = ("receiving", "received", "kept", "failed")


class DicomNodeRow(Base):
    """A DICOM node (PACS, scanner, workstation): who may send to us, and where results go.

    ``incoming``: the node may open associations to send studies (checked on its calling AE title and
    address, like Orthanc's ``DicomModalities``). ``send`` (seg, sr, epdf, sc) and ``send_on``
    (preliminary, final) say which results the outbox delivers to it and when; ``default_route``: the
    results of the studies it sent go back to it. ``user_id``: the service account its studies are
    received as (never signs in).
    """

    __tablename__ = "dicom_nodes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    ae_title: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    incoming: Mapped[bool] = mapped_column(Boolean, default=False)
    send: Mapped[list[str]] = mapped_column(JSON, default=list)
    send_on: Mapped[list[str]] = mapped_column(JSON, default=list)
    default_route: Mapped[bool] = mapped_column(Boolean, default=False)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DicomArrivalRow(Base):
    """A study arriving over DICOM, instance by instance, until no instance came for the stable age.

    ``receiving`` → ``received`` (handed to the same workflow as an upload: ``study_id``), ``kept``
    (stored but not analysed: ``reason``, e.g. not a brain MR) or ``failed`` (``reason``).
    ``study_uid_digest``: keyed HMAC of the StudyInstanceUID (no UID in clear).
    """

    __tablename__ = "dicom_arrivals"
    __table_args__ = (Index("ix_dicom_arrivals_state_last", "state", "last_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_uid_digest: Mapped[str] = mapped_column(String(64), index=True)
    node_id: Mapped[str | None] = mapped_column(ForeignKey("dicom_nodes.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(20), default="receiving")
    instances: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    first_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_at: Mapped[datetime] = mapped_column(default=utcnow)
    study_id: Mapped[str | None] = mapped_column(ForeignKey("studies.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)


class DicomInstanceRow(Base):
    """One instance received by C-STORE, stored encrypted (``object_key``) before Success was answered.

    ``sop_uid_digest`` (keyed HMAC of the SOPInstanceUID) is unique: an instance sent again is counted once.
    """

    __tablename__ = "dicom_instances"

    sop_uid_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    arrival_id: Mapped[str] = mapped_column(ForeignKey("dicom_arrivals.id", ondelete="CASCADE"), index=True)
    object_key: Mapped[str] = mapped_column(ForeignKey("stored_objects.key"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


DESTINATION_KINDS = ("hl7", "fhir", "dicom", "dicomweb")
DELIVERY_STATES = ("queued", "sending", "delivered", "failed")
DELIVERY_EVENTS = ("preliminary", "final", "amendment")


class DestinationRow(Base):
    """A hospital system reports are delivered to (:mod:`neuronav.workflow.deliveries`)."""

    __tablename__ = "destinations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # hl7 | fhir | dicom | dicomweb (a sender per kind)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # host, port, base URL, … (no secrets)
    secrets_enc: Mapped[str | None] = mapped_column(Text)  # tokens, client secrets: encrypted JSON
    outputs: Mapped[list[str]] = mapped_column(JSON, default=list)  # formats sent (hl7, fhir-r4, sr, …)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # preliminary | final | amendment
    identified: Mapped[bool] = mapped_column(Boolean, default=True)  # clinical (identity) or pseudonymous
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(32))


class DeliveryRow(Base):
    """One output of one report version to one destination: queued → sending → delivered | failed."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # destination, report, version and output: the same report version is never delivered twice
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    destination_id: Mapped[str] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"), index=True)
    report_id: Mapped[str] = mapped_column(String(20), index=True)
    report_version: Mapped[int] = mapped_column(Integer)
    study_id: Mapped[str | None] = mapped_column(String(32), index=True)
    output: Mapped[str] = mapped_column(String(20))
    event: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    peer_status: Mapped[str | None] = mapped_column(String(40))  # AA / AE / AR, HTTP 201, …
    peer_text: Mapped[str | None] = mapped_column(Text)  # the peer's words: ACK text, OperationOutcome (JSON)
    error: Mapped[str | None] = mapped_column(Text)  # why the last attempt failed (ours or the peer's)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]


ORDER_STATES = ("ordered", "arrived", "analysed", "signed", "cancelled")


class OrderRow(Base):
    """An imaging order received over HL7 (:mod:`neuronav.workflow.orders`). PHI encrypted; the accession
    number and MRN also as keyed digests, to match a study to its order without decrypting."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    placer_number: Mapped[str | None] = mapped_column(String(64), index=True)  # ORC-2 (the EHR's order id)
    placer_authority: Mapped[str | None] = mapped_column(String(64))
    filler_number: Mapped[str | None] = mapped_column(String(64))  # ORC-3
    filler_authority: Mapped[str | None] = mapped_column(String(64))
    accession_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    accession_enc: Mapped[str | None] = mapped_column(Text)
    mrn_digest: Mapped[str | None] = mapped_column(String(64), index=True)  # of issuer and MRN
    mrn_enc: Mapped[str | None] = mapped_column(Text)
    mrn_issuer: Mapped[str | None] = mapped_column(String(64))
    patient_name_enc: Mapped[str | None] = mapped_column(Text)
    birth_date_enc: Mapped[str | None] = mapped_column(Text)
    sex: Mapped[str | None] = mapped_column(String(1))
    procedure: Mapped[str | None] = mapped_column(String(200))  # OBR-4 code^text
    scheduled_date: Mapped[str | None] = mapped_column(String(8))  # YYYYMMDD, for matching by MRN and date
    state: Mapped[str] = mapped_column(String(20), default="ordered")
    study_id: Mapped[str | None] = mapped_column(ForeignKey("studies.id", ondelete="SET NULL"), index=True)
    message_type: Mapped[str] = mapped_column(String(20))  # ORM^O01 | OMI^O23
    control_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RejectedMessageRow(Base):
    """An HL7 message the listener answered AE / AR, kept (encrypted: it names a patient) for an admin."""

    __tablename__ = "hl7_rejected"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    peer: Mapped[str | None] = mapped_column(String(100))
    ack_code: Mapped[str] = mapped_column(String(2))
    reason: Mapped[str] = mapped_column(Text)  # ours: names the field, never quotes its value
    message_enc: Mapped[str] = mapped_column(Text)
