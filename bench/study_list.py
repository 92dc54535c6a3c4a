"""Study list API latency with 10,000 studies, on SQLite and on PostgreSQL, side by side.

Usage:  .venv/bin/python bench/study_list.py [--studies 10000] [--requests 300] [--postgres URL]

Fills a fresh database with --studies studies (rows as an upload makes them: encrypted PHI
columns, sequences, analyses, a report for some), then times GET /api/studies through the real
app (FastAPI TestClient, in-process ASGI, bearer token of a radiologist: permission check, session
check and the audit event included) for a mix of pages, filters and searches. The peer is the bare
SQL query of the first page on the same database (what any list must pay); the ratio is printed.
Target (issue 5): p95 ≤ 50 ms on both databases.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine


def fill(url: str, n: int, user_id: str) -> None:
    from sqlalchemy import insert

    from neuronav.db.models import AnalysisRow, ReportRow, StudyRow
    from neuronav.db.session import make_engine

    engine = make_engine(url)
    now = datetime.now(UTC)
    studies, analyses, reports = [], [], []
    for i in range(n):
        sid = uuid.uuid4().hex
        studies.append(
            {
                "id": sid,
                "content_sha256": uuid.uuid4().hex * 2,
                "patient_pseudonym": f"NNP-{uuid.uuid4().hex[:20]}",
                "patient_name_enc": "nnf1:x:" + "A" * 80,
                "patient_id_enc": "nnf1:x:" + "B" * 60,
                "study_date": "20240101",
                "description": "MRI BRAIN WITH AND WITHOUT CONTRAST" if i % 3 else "MR HEAD",
                "sequences": {"T1": {}, "T1c": {}, "T2": {}, "FLAIR": {}},
                "n_files": 576,
                "size_bytes": 12_000_000,
                "state": "done" if i % 10 else "queued",
                "flagged": i % 4 == 0,
                "uploaded_by": user_id,
                "uploaded_at": now - timedelta(minutes=i),
            }
        )
        aid = uuid.uuid4().hex
        analyses.append(
            {
                "id": aid,
                "study_id": sid,
                "cache_key": uuid.uuid4().hex * 2,
                "model": "m",
                "state": "done",
                "progress": 1.0,
                "attempts": 1,
                "created_at": now - timedelta(minutes=i),
                "result": {},
            }
        )
        if i % 2 == 0:
            reports.append(
                {
                    "id": f"NN-20260101-{i:08x}",
                    "study_id": sid,
                    "analysis_id": aid,
                    "version": 1,
                    "status": "preliminary",
                    "updated_at": now,
                }
            )
    with engine.begin() as conn:
        for table, rows in ((StudyRow, studies), (AnalysisRow, analyses), (ReportRow, reports)):
            for k in range(0, len(rows), 2000):
                conn.execute(insert(table), rows[k : k + 2000])
    engine.dispose()


def run(url: str, label: str, n: int, requests: int, work: Path) -> tuple[float, float, float]:
    from fastapi.testclient import TestClient
    from sqlalchemy import select, text

    from neuronav.config import get_settings
    from neuronav.db.models import StudyRow
    from neuronav.db.session import make_engine, migrate
    from neuronav.security import totp  # noqa: F401
    from neuronav.service.app import create_app
    from neuronav.workflow.operations import create_account

    os.environ["NEURONAV_DATA_DIR"] = str(work / label)
    os.environ["NEURONAV_DATABASE_URL"] = url
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings.database)
    uid = create_account(
        settings,
        f"rad-{label}@bench.example",
        "a long bench password 1",
        "radiologist",
        display_name="Bench",
        active=True,
        licence="B-1",
    )
    fill(settings.database, n, uid)
    client = TestClient(create_app(settings))
    client.__enter__()
    tok = client.post(
        "/api/auth/login", json={"email": f"rad-{label}@bench.example", "password": "a long bench password 1"}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {tok}"}
    queries = ["", "?flagged=true", "?state=done&limit=50", "?offset=5000", "?q=HEAD", "?offset=9950", "?q=NNP-0"]
    for q in queries:
        assert client.get(f"/api/studies{q}", headers=headers).status_code == 200
    times = []
    for i in range(requests):
        q = queries[i % len(queries)]
        t0 = time.perf_counter()
        r = client.get(f"/api/studies{q}", headers=headers)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200
    engine = make_engine(settings.database)
    sql_times = []
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        for _ in range(50):
            t0 = time.perf_counter()
            conn.execute(
                select(StudyRow).order_by(StudyRow.flagged.desc(), StudyRow.uploaded_at.desc()).limit(50)
            ).all()
            sql_times.append(time.perf_counter() - t0)
    engine.dispose()
    client.__exit__(None, None, None)
    times.sort()
    p50 = statistics.median(times)
    p95 = times[int(0.95 * len(times)) - 1]
    return p50, p95, statistics.median(sql_times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    import psycopg

    work = Path(tempfile.mkdtemp(prefix="nn-bench-list-"))
    name = f"neuronav_bench_{uuid.uuid4().hex[:8]}"
    admin = args.postgres.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    print(f"machine: {machine()}")
    missed = False
    try:
        for label, url in (("sqlite", f"sqlite:///{work / 'bench.db'}"), ("postgresql", f"{args.postgres}/{name}")):
            p50, p95, sql = run(url, label, args.studies, args.requests, work)
            print(f"\nGET /api/studies, {args.studies:,} studies, {label}: {args.requests} requests")
            print(f"  NeuroNav API  p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   (target p95 ≤ 50 ms)")
            print(f"  bare SQL first page (peer)  {sql * 1000:7.1f} ms   ratio p50 / SQL = {p50 / sql:.1f}")
            missed |= p95 > 0.050
    finally:
        from sqlalchemy.orm import close_all_sessions

        close_all_sessions()
        from neuronav.db.session import session_factory

        session_factory.cache_clear()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
