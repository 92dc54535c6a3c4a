"""Roles, permissions and the role → permission matrix (as data), break-glass and object-level rules.

Permissions (``resource:action``)::

    study:upload             upload a study (DICOM/NIfTI)
    study:status             processing status of a study (a technician: only studies they uploaded)
    study:list               list studies (shows patient identifiers)
    study:read               open a study: images, patient/study metadata              [patient data]
    study:images             a study's images in the viewer, to check their quality: no AI results, no
                             report, no patient identity (a technician: only studies they uploaded)
    study:export_deidentified  download the study's DICOM de-identified (PS3.15 Basic Profile), e.g. for
                             research or a second opinion; derived from patient data, so audited
    analysis:start           start or re-run the AI analysis of a study
    analysis:read            AI results before review: segmentation, measurements      [patient data]
    report:read_preliminary  read a report that is not signed (preliminary, reviewed, unsigned amendment)
    report:read_final        read a signed report (final, or a signed amendment)
    report:edit / report:sign / report:amend   the radiologist's lifecycle steps (neuronav.report.lifecycle)
    report:export            download/send a report in an output format (PDF, DICOM, FHIR, HL7)
    annotation:create        add an annotation to a study
    annotation:read          read annotations
    user:manage              create, disable, re-enable users, change roles, reset second factors
    user:verify              verify a professional (licence number, role) and so activate the account
    settings:manage          change service settings
    audit:read               read the audit log
    breakglass:use           open a break-glass: time-limited, reasoned, audited read access to patient data

Matrix (from the service issue)::

    technician   study:upload, study:status and study:images (own uploads)      — no identity, no AI results, no reports
    radiologist  study:list/read/status/export_deidentified, analysis:start/read, every report
                 permission, annotations
    neurologist  study:list/read/export_deidentified, report:read_final (signed reports only),
                 annotation:create/read
    admin        user:manage/verify, settings:manage, audit:read, breakglass:use — no patient data;
                 an open break-glass adds the read-only :data:`BREAKGLASS_PERMISSIONS` for 60 minutes
                 (reading, and the de-identified export: it gives less than reading does)

Every check goes through :func:`require` (role level) or :func:`object_access` (role + object
rules); an inactive or unverified account is denied everything. Both return a :class:`Grant`; when
``grant.audit_required`` (access through a break-glass) the caller must write
``grant.audit_event(...)`` to the audit log before returning the data.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from neuronav.security._time import aware, now_utc
from neuronav.security.errors import PermissionDenied


class Role(StrEnum):
    TECHNICIAN = "technician"
    RADIOLOGIST = "radiologist"
    NEUROLOGIST = "neurologist"
    ADMIN = "admin"


class Permission(StrEnum):
    STUDY_UPLOAD = "study:upload"
    STUDY_LIST = "study:list"
    STUDY_READ = "study:read"
    STUDY_STATUS = "study:status"
    STUDY_IMAGES = "study:images"
    STUDY_EXPORT_DEIDENTIFIED = "study:export_deidentified"
    ANALYSIS_START = "analysis:start"
    ANALYSIS_READ = "analysis:read"
    REPORT_READ_PRELIMINARY = "report:read_preliminary"
    REPORT_READ_FINAL = "report:read_final"
    REPORT_EDIT = "report:edit"
    REPORT_SIGN = "report:sign"
    REPORT_AMEND = "report:amend"
    REPORT_EXPORT = "report:export"
    ANNOTATION_CREATE = "annotation:create"
    ANNOTATION_READ = "annotation:read"
    USER_MANAGE = "user:manage"
    USER_VERIFY = "user:verify"
    SETTINGS_MANAGE = "settings:manage"
    AUDIT_READ = "audit:read"
    BREAKGLASS_USE = "breakglass:use"


P = Permission

# Permissions that show or change patient data (a radiologist holds them all; admins none by role).
PATIENT_DATA_PERMISSIONS = frozenset(
    {
        P.STUDY_LIST,
        P.STUDY_READ,
        P.STUDY_STATUS,
        P.STUDY_IMAGES,
        P.STUDY_EXPORT_DEIDENTIFIED,
        P.ANALYSIS_START,
        P.ANALYSIS_READ,
        P.REPORT_READ_PRELIMINARY,
        P.REPORT_READ_FINAL,
        P.REPORT_EDIT,
        P.REPORT_SIGN,
        P.REPORT_AMEND,
        P.REPORT_EXPORT,
        P.ANNOTATION_CREATE,
        P.ANNOTATION_READ,
    }
)

ROLE_PERMISSIONS: MappingProxyType[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.TECHNICIAN: frozenset({P.STUDY_UPLOAD, P.STUDY_STATUS, P.STUDY_IMAGES}),
        Role.RADIOLOGIST: PATIENT_DATA_PERMISSIONS,
        Role.NEUROLOGIST: frozenset(
            {
                P.STUDY_LIST,
                P.STUDY_READ,
                P.STUDY_IMAGES,
                P.STUDY_EXPORT_DEIDENTIFIED,
                P.REPORT_READ_FINAL,
                P.ANNOTATION_CREATE,
                P.ANNOTATION_READ,
            }
        ),
        Role.ADMIN: frozenset({P.USER_MANAGE, P.USER_VERIFY, P.SETTINGS_MANAGE, P.AUDIT_READ, P.BREAKGLASS_USE}),
    }
)


# What an open break-glass adds: reading, and the de-identified export (which shows less than reading
# does) — no report export, no edits, no analysis runs, no annotations.
BREAKGLASS_PERMISSIONS = frozenset(
    {
        P.STUDY_LIST,
        P.STUDY_READ,
        P.STUDY_STATUS,
        P.STUDY_IMAGES,
        P.STUDY_EXPORT_DEIDENTIFIED,
        P.ANALYSIS_READ,
        P.REPORT_READ_PRELIMINARY,
        P.REPORT_READ_FINAL,
        P.ANNOTATION_READ,
    }
)

BREAKGLASS_MINUTES = 60
BREAKGLASS_MIN_REASON = 10

# Report statuses of neuronav.report.lifecycle.
SIGNED_STATUSES = frozenset({"final", "amended"})
REPORT_STATUSES = frozenset({"preliminary", "reviewed", "final", "amended"})


def parse_role(role: Role | str) -> Role:
    """The :class:`Role` named by ``role``; :class:`PermissionDenied` for anything else."""
    try:
        return Role(role)
    except ValueError as exc:
        raise PermissionDenied(f"unknown role {role!r}") from exc


def permissions_for(role: Role | str) -> frozenset[Permission]:
    """The permissions ``role`` holds by itself (without a break-glass)."""
    return ROLE_PERMISSIONS[parse_role(role)]


# -- break-glass ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakGlass:
    """An open break-glass: who, why, from when until when, optionally limited to one study.

    The caller stores it and writes :meth:`audit_event` (``breakglass.open``) to the audit log when
    it is opened; every access through it is audited again via :meth:`Grant.audit_event`.
    """

    breakglass_id: str
    user_id: str
    role: Role
    reason: str
    opened_at: datetime
    expires_at: datetime
    study_id: str | None = None

    def active(self, now: datetime | None = None) -> bool:
        t = now_utc(now)
        opened, expires = aware(self.opened_at), aware(self.expires_at)
        return opened is not None and expires is not None and opened <= t < expires

    def audit_event(self) -> dict[str, Any]:
        return {
            "event": "breakglass.open",
            "breakglass_id": self.breakglass_id,
            "user_id": self.user_id,
            "role": str(self.role),
            "reason": self.reason,
            "opened_at": self.opened_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "study_id": self.study_id,
        }


def open_breakglass(
    *,
    user_id: str,
    role: Role | str,
    reason: str,
    active: bool,
    verified: bool,
    study_id: str | None = None,
    minutes: int = BREAKGLASS_MINUTES,
    now: datetime | None = None,
) -> BreakGlass:
    """Open a break-glass for ``user_id`` (a role holding ``breakglass:use``) with a mandatory reason.

    The reason needs at least :data:`BREAKGLASS_MIN_REASON` non-blank characters; the duration is
    at most :data:`BREAKGLASS_MINUTES`. The caller must audit ``result.audit_event()``.
    """
    require(role, P.BREAKGLASS_USE, active=active, verified=verified)
    text = " ".join(reason.split())
    if len(text) < BREAKGLASS_MIN_REASON:
        raise PermissionDenied(
            f"a break-glass needs a reason of at least {BREAKGLASS_MIN_REASON} characters "
            "(why do you need this patient's data?)"
        )
    if not 0 < minutes <= BREAKGLASS_MINUTES:
        raise PermissionDenied(f"a break-glass lasts at most {BREAKGLASS_MINUTES} minutes")
    t = now_utc(now)
    return BreakGlass(
        breakglass_id=secrets.token_hex(8),
        user_id=user_id,
        role=parse_role(role),
        reason=text,
        opened_at=t,
        expires_at=t + timedelta(minutes=minutes),
        study_id=study_id,
    )


# -- role-level check -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """Permission granted, and how: by the role itself, or through a break-glass (then audit it)."""

    role: Role
    permission: Permission
    via: Literal["role", "breakglass"]
    breakglass: BreakGlass | None = None

    @property
    def audit_required(self) -> bool:
        return self.via == "breakglass"

    def audit_event(self, *, target: str | None = None, now: datetime | None = None) -> dict[str, Any]:
        """The audit-log entry of this access (what the caller logs for every break-glass access)."""
        return {
            "event": "breakglass.access" if self.breakglass else "access",
            "role": str(self.role),
            "permission": str(self.permission),
            "target": target,
            "at": now_utc(now).isoformat(),
            "breakglass_id": self.breakglass.breakglass_id if self.breakglass else None,
            "user_id": self.breakglass.user_id if self.breakglass else None,
            "reason": self.breakglass.reason if self.breakglass else None,
        }


def require(
    user_role: Role | str,
    permission: Permission | str,
    *,
    active: bool,
    verified: bool,
    breakglass: BreakGlass | None = None,
    user_id: str | None = None,
    now: datetime | None = None,
) -> Grant:
    """Grant ``permission`` to an account of ``user_role``, or raise :class:`PermissionDenied`.

    An inactive or unverified account is denied everything. A permission the role lacks is granted
    only when it is one of :data:`BREAKGLASS_PERMISSIONS` and ``breakglass`` is open now, belongs to
    this role and (when ``user_id`` is given, which the service always should) to this user.
    """
    perm = Permission(permission)  # an unknown permission is a bug in the caller: ValueError
    role = parse_role(user_role)
    if not active or not verified:
        raise PermissionDenied("this account is not active or not yet verified by an administrator")
    if perm in ROLE_PERMISSIONS[role]:
        return Grant(role, perm, "role")
    if breakglass is not None and perm in BREAKGLASS_PERMISSIONS and P.BREAKGLASS_USE in ROLE_PERMISSIONS[role]:
        if breakglass.role != role or (user_id is not None and breakglass.user_id != user_id):
            raise PermissionDenied("this break-glass belongs to another user")
        if not breakglass.active(now):
            raise PermissionDenied("the break-glass has expired; open a new one with a reason")
        return Grant(role, perm, "breakglass", breakglass)
    if perm in BREAKGLASS_PERMISSIONS and P.BREAKGLASS_USE in ROLE_PERMISSIONS[role]:
        raise PermissionDenied(f"a {role} reads patient data only through a break-glass with a reason ({perm})")
    raise PermissionDenied(f"a {role} may not {perm}")


# -- object-level rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyObject:
    study_id: str
    uploaded_by: str | None = None  # user id of the uploader


@dataclass(frozen=True)
class ReportObject:
    report_id: str
    study_id: str
    status: str  # preliminary | reviewed | final | amended
    signed: bool


@dataclass(frozen=True)
class AnnotationObject:
    annotation_id: str
    study_id: str
    author: str


Resource = StudyObject | ReportObject | AnnotationObject


def report_published(report: ReportObject) -> bool:
    """A report a non-reading clinician may see: signed, final or a signed amendment."""
    return report.signed and report.status in SIGNED_STATUSES


def report_read_permission(report: ReportObject) -> Permission:
    """The permission reading this report needs: ``report:read_final`` once signed, else ``read_preliminary``."""
    return P.REPORT_READ_FINAL if report_published(report) else P.REPORT_READ_PRELIMINARY


def object_access(
    user_role: Role | str,
    permission: Permission | str,
    obj: Resource,
    *,
    user_id: str,
    active: bool,
    verified: bool,
    breakglass: BreakGlass | None = None,
    now: datetime | None = None,
) -> Grant:
    """:func:`require` plus the rules about this object; :class:`PermissionDenied` when any fails.

    * ``report:read_final`` opens only a signed report (final or signed amendment): a neurologist
      never sees a preliminary, reviewed or unsigned amended version. Use
      :func:`report_read_permission` to pick the permission for a report.
    * Without ``study:read`` (a technician), a study's status is visible only to its uploader.
    * A break-glass limited to one study opens only that study's objects.
    """
    grant = require(
        user_role, permission, active=active, verified=verified, breakglass=breakglass, user_id=user_id, now=now
    )
    bg = grant.breakglass
    if bg is not None and bg.study_id is not None and obj.study_id != bg.study_id:
        raise PermissionDenied("the break-glass was opened for another study")
    if isinstance(obj, ReportObject):
        if obj.status not in REPORT_STATUSES:
            raise PermissionDenied(f"unknown report status {obj.status!r}")
        if grant.permission == P.REPORT_READ_FINAL and not report_published(obj):
            raise PermissionDenied(f"report {obj.report_id} is not signed yet; only signed reports can be read")
    own_uploads_only = grant.via == "role" and P.STUDY_READ not in ROLE_PERMISSIONS[grant.role]
    if isinstance(obj, StudyObject) and own_uploads_only and (obj.uploaded_by is None or obj.uploaded_by != user_id):
        raise PermissionDenied(f"study {obj.study_id} was uploaded by someone else")
    return grant


__all__ = [
    "BREAKGLASS_MINUTES",
    "BREAKGLASS_MIN_REASON",
    "BREAKGLASS_PERMISSIONS",
    "PATIENT_DATA_PERMISSIONS",
    "ROLE_PERMISSIONS",
    "AnnotationObject",
    "BreakGlass",
    "Grant",
    "Permission",
    "ReportObject",
    "Resource",
    "Role",
    "StudyObject",
    "object_access",
    "open_breakglass",
    "parse_role",
    "permissions_for",
    "report_published",
    "report_read_permission",
    "require",
]
