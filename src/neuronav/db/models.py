"""The tables of the service. Patient data (PHI) columns hold ciphertext (see ``*_enc``); the audit
log is append-only and hash-chained (:mod:`neuronav.audit`).

::

    users ──< sessions ──○ breakglass_grants    (the open break-glass of a session, with its expiry)
      │
      ├──< studies ──< stored_objects          (uploaded files and results, encrypted at rest)
      │        ├──< analyses                   (jobs: queued / running / done / failed)
      │        ├──< reports ──< report_versions (every version kept, never overwritten)
      │        └──< annotations                (measurements and notes of the viewer)
      └──< audit_events                        (who, role, when, from where, what, outcome; chained)

    throttles                                  (sign-in and registration counters per client address, and
                                                per login name without an account; keys stored as digests)

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
