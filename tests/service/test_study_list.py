"""GET /api/studies (the worklist): order, filters, search, paging, latest analysis and report, and the
audit event, on SQLite and on PostgreSQL (rows written directly, as uploads and jobs make them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from neuronav.config import Settings
from neuronav.db.models import AnalysisRow, ReportRow, StudyRow
from neuronav.db.session import session_scope
from tests.service.conftest import People, audit_events

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Overrides the conftest fixture: each test of this module runs on both databases."""
    if request.param == "sqlite":
        tmp_path = request.getfixturevalue("tmp_path")
        return f"sqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def add_study(
    settings: Settings,
    uploaded_by: str,
    *,
    minutes_ago: int,
    pseudonym: str | None = None,
    description: str | None = "MR HEAD",
    state: str = "done",
    flagged: bool = False,
    analyses: tuple[tuple[str, int], ...] = (("done", 0),),  # (state, minutes after the upload)
    reports: tuple[tuple[str, int], ...] = (),  # (status, minutes after the upload)
) -> str:
    uploaded = NOW - timedelta(minutes=minutes_ago)
    with session_scope(settings.database) as db:
        study = StudyRow(
            content_sha256=uuid.uuid4().hex * 2,
            patient_pseudonym=pseudonym if pseudonym is not None else f"NNP-{uuid.uuid4().hex[:20]}",
            description=description,
            sequences={"T1c": {}, "FLAIR": {}},
            n_files=3,
            state=state,
            flagged=flagged,
            uploaded_by=uploaded_by,
            uploaded_at=uploaded,
        )
        db.add(study)
        db.flush()
        ids = []
        for a_state, after in analyses:
            analysis = AnalysisRow(
                study_id=study.id,
                cache_key="k" * 64,
                model="m",
                state=a_state,
                created_at=uploaded + timedelta(minutes=after),
                result={"report_id": f"R-{after}"} if a_state == "done" else {},
            )
            db.add(analysis)
            db.flush()
            ids.append(analysis.id)
        for n, (status, after) in enumerate(reports):
            db.add(
                ReportRow(
                    id=f"NN-{uuid.uuid4().hex[:12]}-{n}",
                    study_id=study.id,
                    analysis_id=ids[0],
                    status=status,
                    updated_at=uploaded + timedelta(minutes=after),
                )
            )
        return study.id


def listing(client: TestClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    response = client.get(f"/api/studies{query}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_worklist_order_paging_latest_analysis_and_report(
    settings: Settings, client: TestClient, people: People
) -> None:
    rad = people.create("radiologist")
    headers = people.login(rad)
    old = add_study(settings, rad.id, minutes_ago=30)
    new = add_study(
        settings,
        rad.id,
        minutes_ago=10,
        analyses=(("done", 1), ("running", 5)),  # the newest analysis is the one shown
        reports=(("preliminary", 2), ("final", 8)),
    )
    flagged = add_study(settings, rad.id, minutes_ago=50, flagged=True, analyses=())

    page = listing(client, headers)
    assert [item["id"] for item in page["items"]] == [flagged, new, old]  # flagged first, then newest first
    assert page["total"] == 3 and page["limit"] == 50 and page["offset"] == 0
    by_id = {item["id"]: item for item in page["items"]}
    assert by_id[flagged]["analysis"] is None and by_id[flagged]["report_id"] is None
    assert by_id[new]["analysis"]["state"] == "running" and by_id[new]["analysis"]["report_id"] is None
    assert by_id[new]["report_status"] == "final"
    assert by_id[old]["analysis"]["report_id"] == "R-0" and by_id[old]["sequences"] == ["FLAIR", "T1c"]
    assert by_id[old]["uploaded_at"].endswith(("Z", "+00:00"))

    second = listing(client, headers, "?limit=2&offset=2")
    assert [item["id"] for item in second["items"]] == [old] and second["total"] == 3
    past_the_end = listing(client, headers, "?offset=10")
    assert past_the_end["items"] == [] and past_the_end["total"] == 3
    events = audit_events(settings, "study.list")
    assert [e.detail for e in events[-3:]] == [
        {"count": 3, "offset": 0, "identity": True, "searched": False},  # the identity of the rows was shown
        {"count": 1, "offset": 2, "identity": True, "searched": False},
        {"count": 0, "offset": 10, "identity": True, "searched": False},
    ]


def test_worklist_filters(settings: Settings, client: TestClient, people: People) -> None:
    rad = people.create("radiologist")
    headers = people.login(rad)
    done = add_study(settings, rad.id, minutes_ago=5)
    queued = add_study(settings, rad.id, minutes_ago=100, state="queued")
    flagged = add_study(settings, rad.id, minutes_ago=200, flagged=True)

    assert [i["id"] for i in listing(client, headers, "?state=queued")["items"]] == [queued]
    assert [i["id"] for i in listing(client, headers, "?flagged=true")["items"]] == [flagged]
    assert {i["id"] for i in listing(client, headers, "?flagged=false")["items"]} == {done, queued}
    since = (NOW - timedelta(minutes=150)).isoformat().replace("+00:00", "Z")
    assert {i["id"] for i in listing(client, headers, f"?since={since}")["items"]} == {done, queued}
    assert listing(client, headers, "?state=done&flagged=false")["total"] == 1
    assert listing(client, headers, "?state=failed") == {"items": [], "total": 0, "limit": 50, "offset": 0}


def test_worklist_search(settings: Settings, client: TestClient, people: People) -> None:
    rad = people.create("radiologist")
    headers = people.login(rad)
    brain = add_study(settings, rad.id, minutes_ago=1, pseudonym="NNP-abc123", description="MRI Brain w/o contrast")
    head = add_study(settings, rad.id, minutes_ago=2, pseudonym="NNP-def456", description="MR HEAD")
    odd = add_study(settings, rad.id, minutes_ago=3, pseudonym="NNP-0ff", description="Kopf 50% back\\slash")
    bare = add_study(settings, rad.id, minutes_ago=4, pseudonym="NNP-777", description=None)

    def found(q: str) -> set[str]:
        return {i["id"] for i in listing(client, headers, f"?q={q}")["items"]}

    assert found("brain") == {brain} and found("BRAIN") == {brain}  # case does not matter
    assert found("nnp-DEF") == {head}  # the pseudonym is searched too
    assert found("nnp-") == {brain, head, odd, bare}
    assert found("777") == {bare}  # a study without a description
    assert found("w%2Fo") == {brain}  # "/" is an ordinary character
    assert found("back%5Cslash") == {odd}  # so is "\\"
    assert found("50%25") == {odd}  # "%" and "_" are not wildcards (they are dropped)
    assert found("abc123MRI") == set()  # never across the pseudonym and the description
    assert found("%25") == {brain, head, odd, bare}  # only wildcards: no filter
    page = listing(client, headers, "?q=nnp-&limit=1&offset=1")
    assert [i["id"] for i in page["items"]] == [head] and page["total"] == 4
    assert listing(client, headers, "?q=zzz") == {"items": [], "total": 0, "limit": 50, "offset": 0}
    assert listing(client, headers, "?q=zzz&offset=5")["total"] == 0


def test_technician_sees_own_uploads_only(settings: Settings, client: TestClient, people: People) -> None:
    tech, other, rad = people.create("technician"), people.create("technician"), people.create("radiologist")
    mine = add_study(settings, tech.id, minutes_ago=1, description="MR HEAD")
    add_study(settings, other.id, minutes_ago=2, description="MR HEAD")
    add_study(settings, rad.id, minutes_ago=3)
    page = listing(client, people.login(tech), "?q=head")
    assert [i["id"] for i in page["items"]] == [mine] and page["total"] == 1
    assert listing(client, people.login(rad), "")["total"] == 3


def test_search_plan(settings: Settings, client: TestClient) -> None:
    """PostgreSQL: the search expression is the one migration 0005 indexed (else the planner could not
    use the index). SQLite has no trigram index: it scans."""
    from sqlalchemy import func

    from neuronav.workflow.worklist import _search_text

    with session_scope(settings.database) as db:
        dialect = db.get_bind().dialect
        compiled = (
            _search_text(dialect.name)
            .like(func.lower("%head%"), escape="/")
            .compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        )
        if dialect.name == "postgresql":
            db.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(row[0] for row in db.execute(text(f"EXPLAIN SELECT id FROM studies WHERE {compiled}")))
            assert "ix_studies_search_trgm" in plan, plan
        else:
            plan = "\n".join(
                str(row[-1]) for row in db.execute(text(f"EXPLAIN QUERY PLAN SELECT id FROM studies WHERE {compiled}"))
            )
            assert "SCAN studies" in plan, plan
