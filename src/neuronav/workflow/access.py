"""Access decisions with their audit events: the database side of :mod:`neuronav.security.access`.

Every edge (HTTP route, DICOM association, HL7 message, CLI command) checks access through these
functions, so a refusal and an access through a break-glass are audited the same way wherever they
happen:

* :func:`authorize` — the actor's role (or open break-glass) grants a permission; a refusal is
  audited (``access.denied``) and committed before :class:`PermissionDenied` is raised, an access
  through a break-glass is audited (``breakglass.access``).
* :func:`authorize_object` — the same plus the object's rules (own uploads, signed reports, a
  break-glass limited to one study).
* :func:`refusal` — audit a refusal decided elsewhere (an AI image of an unsigned report).
* :func:`audit_event` — append an audit event with who / role / from where filled in; flushed in
  the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from neuronav import audit
from neuronav.audit import Outcome
from neuronav.db.models import AuditEventRow
from neuronav.security import permissions
from neuronav.security.access import Actor, require
from neuronav.security.errors import PermissionDenied
from neuronav.security.permissions import Grant, Permission, Resource


def audit_event(
    db: Session,
    actor: Actor | None,
    action: str,
    *,
    outcome: Outcome = "success",
    target_type: str | None = None,
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
    client: str | None = None,
) -> AuditEventRow:
    """Append an audit event by ``actor`` (None: anonymous); ``detail`` holds ids, counts and reasons, never PHI."""
    return audit.record(
        db,
        action,
        outcome=outcome,
        actor_id=actor.id if actor is not None else None,
        actor_role=str(actor.role) if actor is not None else None,
        client=client or (actor.client if actor is not None else None),
        target_type=target_type,
        target_id=target_id,
        detail=detail,
    )


def refusal(db: Session, actor: Actor, message: str, *, study_id: str, detail: dict[str, Any]) -> PermissionDenied:
    """Audit a refusal on a study (``access.denied``), committed so that it stays in the log although the
    request fails; returns the error to raise."""
    audit_event(db, actor, "access.denied", outcome="denied", target_type="study", target_id=study_id, detail=detail)
    db.commit()
    return PermissionDenied(message)


def authorize(db: Session, actor: Actor, permission: Permission, *, context: dict[str, Any]) -> Grant:
    """The grant of ``permission`` to ``actor``; refusals and break-glass accesses audited with ``context``
    (the route and method, the association, the command: ids only)."""
    try:
        grant = require(actor, permission)
    except PermissionDenied:
        audit_event(db, actor, "access.denied", outcome="denied", detail={"permission": str(permission), **context})
        db.commit()  # the refusal stays in the log although the request fails
        raise
    if grant.audit_required:
        detail = {"permission": str(permission), **context, "breakglass_id": _bg_id(grant)}
        audit_event(db, actor, "breakglass.access", detail=detail)
    return grant


def authorize_object(db: Session, actor: Actor, permission: Permission, obj: Resource) -> Grant:
    """:func:`~neuronav.security.permissions.object_access` for ``actor`` on ``obj``; audits break-glass
    access and refusals. A refusal is committed before :class:`PermissionDenied` is raised, so call this
    before changing anything (whatever was changed would be committed with the refusal)."""
    try:
        grant = permissions.object_access(
            actor.role,
            permission,
            obj,
            user_id=actor.id,
            active=True,
            verified=actor.verified,
            breakglass=actor.breakglass,
        )
    except PermissionDenied:
        detail = {"permission": str(permission), "object": type(obj).__name__}
        audit_event(db, actor, "access.denied", outcome="denied", target_id=obj.study_id, detail=detail)
        db.commit()
        raise
    if grant.audit_required:
        audit_event(
            db,
            actor,
            "breakglass.access",
            target_type="study",
            target_id=obj.study_id,
            detail={"permission": str(permission), "object": type(obj).__name__, "breakglass_id": _bg_id(grant)},
        )
    return grant


def _bg_id(grant: Grant) -> str | None:
    return grant.breakglass.breakglass_id if grant.breakglass else None


__all__ = ["audit_event", "authorize", "authorize_object", "refusal"]
