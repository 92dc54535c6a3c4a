"""Signing re-authenticates the signer (password, and TOTP code when enrolled) in the workflow function
every edge calls; the status moves only by "mark reviewed" or a signature; the audit records each step."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from neuronav.db.models import AnalysisRow, AuditEventRow, ReportVersionRow, StudyRow, UserRow
from neuronav.db.session import session_scope
from neuronav.errors import LifecycleError
from neuronav.report.build import build_report
from neuronav.report.lifecycle import verify_signature
from neuronav.report.model import SIGNATURE_MEANING
from neuronav.security import totp
from neuronav.security.access import Actor
from neuronav.security.errors import PermissionDenied
from neuronav.security.passwords import hash_password
from neuronav.security.permissions import Role
from neuronav.workflow import reports
from neuronav.workflow.accounts import encrypt_totp_secret
from tests.analysis.findings_factory import make_findings
from tests.workflow.conftest import Env

PASSWORD = "violet harbour seven candles"


@dataclass(frozen=True)
class Signer:
    actor: Actor
    secret: str | None
    report_id: str


def _signer(env: Env, *, with_totp: bool) -> Signer:
    secret = totp.new_secret() if with_totp else None
    report = build_report(make_findings())
    with session_scope(env.settings.database) as db:
        user = UserRow(
            email=f"rad-{with_totp}@example.org",
            display_name="Dr Ada Lovelace",
            role="radiologist",
            password_hash=hash_password(PASSWORD),
            state="active",
            totp_secret_enc=encrypt_totp_secret(env.store, secret) if secret else None,
        )
        study = StudyRow(content_sha256="0" * 64, uploaded_by=env.user_id)
        db.add_all([user, study])
        db.flush()
        analysis = AnalysisRow(study_id=study.id, cache_key="1" * 64, model="test", state="done")
        db.add(analysis)
        db.flush()
        reports.save(db, env.store, report, study_id=study.id, analysis_id=analysis.id, user_id=user.id)
        actor = Actor(
            id=user.id,
            email=user.email,
            role=Role.RADIOLOGIST,
            display_name=user.display_name,
            session_id="session",
            breakglass=None,
            client="192.0.2.10",
        )
    return Signer(actor, secret, report.report_id)


def _reauth_outcomes(env: Env, user_id: str) -> list[str]:
    with session_scope(env.settings.database) as db:
        rows = db.scalars(
            select(AuditEventRow)
            .where(AuditEventRow.action == "reauth", AuditEventRow.actor_id == user_id)
            .order_by(AuditEventRow.seq)
        )
        return [r.outcome for r in rows]


def test_a_wrong_password_signs_nothing_and_is_audited(env: Env) -> None:
    s = _signer(env, with_totp=False)
    with session_scope(env.settings.database) as db, pytest.raises(PermissionDenied, match="password"):
        reports.sign(db, env.store, s.actor, s.report_id, password="not the password")
    with session_scope(env.settings.database) as db:
        assert reports.load(db, env.store, s.report_id).signature is None
        (ver,) = db.scalars(select(ReportVersionRow).where(ReportVersionRow.report_id == s.report_id))
        assert ver.content_sha256 is None
    assert _reauth_outcomes(env, s.actor.id) == ["failure"]
    with session_scope(env.settings.database) as db:
        signed = reports.sign(db, env.store, s.actor, s.report_id, password=PASSWORD)
    assert signed.status == "final" and verify_signature(signed)
    assert signed.signature is not None
    assert (signed.signature.signed_by, signed.signature.meaning, signed.signature.reauthenticated_by) == (
        "Dr Ada Lovelace",
        SIGNATURE_MEANING,
        "password",
    )
    assert _reauth_outcomes(env, s.actor.id) == ["failure", "success"]


def test_an_account_with_totp_signs_with_password_and_code(env: Env) -> None:
    s = _signer(env, with_totp=True)
    assert s.secret is not None
    with session_scope(env.settings.database) as db, pytest.raises(PermissionDenied, match="authenticator code"):
        reports.sign(db, env.store, s.actor, s.report_id, password=PASSWORD)
    with session_scope(env.settings.database) as db, pytest.raises(PermissionDenied):
        reports.sign(db, env.store, s.actor, s.report_id, password=PASSWORD, totp_code="000000")
    code = totp.code_at(s.secret, totp.current_step())
    with session_scope(env.settings.database) as db:
        signed = reports.sign(db, env.store, s.actor, s.report_id, password=PASSWORD, totp_code=code)
    assert signed.signature is not None and signed.signature.reauthenticated_by == "password+totp"


def test_the_status_moves_only_by_mark_reviewed_or_signature(env: Env) -> None:
    s = _signer(env, with_totp=False)
    with session_scope(env.settings.database) as db:
        edited = reports.edit(db, env.store, s.actor, s.report_id, {"/narrative/impression": "Left frontal glioma."})
        assert edited.status == "preliminary"
        reviewed = reports.mark_reviewed(db, env.store, s.actor, s.report_id)
        assert reviewed.status == "reviewed"
        with pytest.raises(LifecycleError, match="not preliminary"):
            reports.mark_reviewed(db, env.store, s.actor, s.report_id)
    with session_scope(env.settings.database) as db:
        signed = reports.sign(db, env.store, s.actor, s.report_id, password=PASSWORD)
        with pytest.raises(LifecycleError, match="already signed"):  # refused before any password check
            reports.sign(db, env.store, s.actor, s.report_id, password="wrong")
        amended = reports.amend(db, env.store, s.actor, s.report_id, "laterality corrected")
    assert signed.status == "final"
    assert (amended.status, amended.amendment_reason, amended.version) == ("amended", "laterality corrected", 2)
