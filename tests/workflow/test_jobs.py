"""The analysis job end to end: upload → job → encrypted results, a stored report; retries; idempotency."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import select

from neuronav.db.models import AnalysisRow, StoredObjectRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.storage.store import ObjectStore
from neuronav.workflow import jobs, reports
from neuronav.workflow.uploads import Upload, receive_upload
from tests.workflow.conftest import Env


def uploaded(env: Env, data: bytes) -> str:
    with session_scope(env.settings.database) as db:
        return receive_upload(
            db, env.store, env.settings, user_id=env.user_id, uploads=[Upload("s.zip", io.BytesIO(data))]
        ).study.id


def queue(env: Env, study_id: str, *, force: bool = False) -> tuple[str, bool]:
    with session_scope(env.settings.database) as db:
        study = db.get(StudyRow, study_id)
        assert study is not None
        analysis, queued = jobs.start_analysis(db, env.settings, study, user_id=env.user_id, force=force)
        return analysis.id, queued


@pytest.mark.slow
def test_upload_to_report(env: Env, phantom_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study_id = uploaded(env, phantom_zip.read_bytes())
    analysis_id, queued = queue(env, study_id)
    assert queued

    calls = {"n": 0}
    real_put = ObjectStore.put

    def flaky_put(self: ObjectStore, *args: object, **kw: object) -> object:  # the first result write fails
        if kw.get("kind") == "result" and calls["n"] == 0:
            calls["n"] += 1
            raise OSError(28, "No space left on device")
        return real_put(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ObjectStore, "put", flaky_put)
    assert jobs.run_analysis(analysis_id, env.settings) == "retry"
    with session_scope(env.settings.database) as db:
        a = db.get(AnalysisRow, analysis_id)
        assert a is not None and a.state == "queued" and "No space left" in (a.error or "")
        assert not db.scalars(select(StoredObjectRow).where(StoredObjectRow.kind.like("result:%"))).all()
    assert jobs.run_analysis(analysis_id, env.settings) == "done"
    with session_scope(env.settings.database) as db:
        a = db.get(AnalysisRow, analysis_id)
        study = db.get(StudyRow, study_id)
        assert a is not None and study is not None
        assert (a.state, a.progress, a.attempts, study.state, study.flagged) == ("done", 1.0, 2, "done", True)
        viewer_images = {f"sequence-{name}.nii.gz" for name in ("FLAIR", "T1", "T1c", "T2")}  # as acquired
        # and the registration a corrected segmentation is located with (workflow/segmentations.py)
        assert set(a.result["objects"]) == set(jobs.RESULT_FILES) | viewer_images | {"registration.json"}
        report = reports.load(db, env.store, a.result["report_id"])
        assert report.status == "preliminary" and report.findings.detection.tumour_detected
        assert report.study_info.patient_pseudonym == study.patient_pseudonym
        row = reports.for_study(db, study_id)
        assert row is not None and row.id == report.report_id
    # idempotent: the same content and models give the finished analysis back, unless forced
    assert queue(env, study_id) == (analysis_id, False)
    forced, queued = queue(env, study_id, force=True)
    assert queued and forced != analysis_id
    assert jobs.run_analysis(analysis_id, env.settings) == "skipped"


def test_a_study_that_cannot_be_analysed_fails_with_its_reason(env: Env, phantom_zip: Path) -> None:
    study_id = uploaded(env, phantom_zip.read_bytes())
    analysis_id, _ = queue(env, study_id)
    with session_scope(env.settings.database) as db:  # the stored upload vanished
        for obj in db.scalars(select(StoredObjectRow).where(StoredObjectRow.study_id == study_id)):
            env.store.delete(obj.key)
    assert jobs.run_analysis(analysis_id, env.settings) in ("failed", "retry")
    with session_scope(env.settings.database) as db:
        a = db.get(AnalysisRow, analysis_id)
        assert a is not None and a.error
