"""Who is acting, and the study access policy that follows from it (pure: no database, no I/O).

:class:`Actor` is the authenticated user of one request, association or command: the role, the
account's state and the open break-glass, as :func:`neuronav.workflow.signin.authenticate` found
them. The functions below answer the policy questions every edge asks the same way:

* :func:`grant_for` / :func:`allowed` — does the role (or the open break-glass) grant a permission;
* :func:`breakglass_study` — the one study a break-glass limited to it opens;
* :func:`identity_open` — the patient identity shown on (and searchable in) the worklist;
* :func:`ai_results_open` — the AI results (lesions, segmentation, heatmap) open to readers of
  analyses, and to readers of final reports once the report is signed;
* :func:`export_permission` — what exporting a report in a format needs.

Writing the audit event of a decision is the caller's job (:mod:`neuronav.workflow.access`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from neuronav.security import permissions
from neuronav.security.errors import PermissionDenied
from neuronav.security.permissions import BreakGlass, Grant, Permission, ReportObject, Role


@dataclass(frozen=True)
class Actor:
    """The authenticated user of a request (an active account with a live session)."""

    id: str
    email: str
    role: Role
    display_name: str
    session_id: str
    breakglass: BreakGlass | None
    client: str
    verified: bool = True
    via: Literal["bearer", "cookie"] = "bearer"
    csrf_token: str | None = None  # set for cookie sessions (the page needs it for unsafe requests)
    password_must_change: bool = False  # signed in with a one-time password


def require(actor: Actor, permission: Permission) -> Grant:
    """:func:`~neuronav.security.permissions.require` for ``actor``: the grant, or :class:`PermissionDenied`."""
    return permissions.require(
        actor.role, permission, active=True, verified=actor.verified, breakglass=actor.breakglass, user_id=actor.id
    )


def grant_for(actor: Actor, permission: Permission) -> Grant | None:
    """How the actor's role (or open break-glass) grants ``permission``; None when it does not."""
    try:
        return require(actor, permission)
    except PermissionDenied:
        return None


def allowed(actor: Actor, permission: Permission) -> bool:
    return grant_for(actor, permission) is not None


def breakglass_study(actor: Actor) -> str | None:
    """The one study ``actor`` reaches through a break-glass limited to it (None: no such limit applies)."""
    grant = grant_for(actor, Permission.STUDY_STATUS)
    bg = grant.breakglass if grant is not None and grant.via == "breakglass" else None
    return bg.study_id if bg is not None else None


def identity_open(actor: Actor) -> bool:
    """The patient's identity (name, MRN, birth date, accession) is shown to, and searchable by, the readers
    of studies (``study:read``: radiologists, neurologists, a break-glass); a technician sees the status of
    their uploads without it."""
    return allowed(actor, Permission.STUDY_READ)


AI_IMAGES = ("segmentation", "heatmap")


def ai_results_open(actor: Actor, report_status: str | None) -> bool:
    """The AI results of a study (lesions, segmentation, heatmap) are open to readers of analyses, and to
    readers of final reports (neurologists) once the report is signed, like the report itself."""
    signed = report_status in permissions.SIGNED_STATUSES
    return allowed(actor, Permission.ANALYSIS_READ) or (signed and allowed(actor, Permission.REPORT_READ_FINAL))


def export_permission(actor: Actor, fmt: str, report: ReportObject) -> Permission | None:
    """The permission exporting ``report`` as ``fmt`` needs beyond reading it: ``report:export``, except the
    PDF of a signed report, which a reader of final reports (by role, not through a break-glass) may take
    as they read it. None: reading suffices."""
    if fmt == "pdf" and permissions.report_published(report):
        grant = grant_for(actor, Permission.REPORT_READ_FINAL)
        if grant is not None and grant.via == "role":
            return None
    return Permission.REPORT_EXPORT


__all__ = [
    "AI_IMAGES",
    "Actor",
    "ai_results_open",
    "allowed",
    "breakglass_study",
    "export_permission",
    "grant_for",
    "require",
]
