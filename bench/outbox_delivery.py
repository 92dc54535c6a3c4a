"""Signature → acknowledged result, through the durable outbox, against real peers; and 100 orders +
100 results with the receiver refusing every third message once.

Peers (the same as the tests'): hl7apy's MLLP server receiving the ORU and answering with an ACK built
by hl7apy; Medplum's FHIR router and in-memory repository in Node (tests/integrations/fhir_server,
``npm ci`` there first); our HL7 listener receives the orders from python-hl7's MLLP client.

Figures printed:

1. signature → ORU acknowledged (AA) by the MLLP peer: from the commit of the signature until the
   outbox's own worker thread (``start_outbox``, as in the server, ``NEURONAV_OUTBOX_INTERVAL_S`` = 1 s)
   has recorded the delivery; side by side with the peer: the same ORU sent straight to the same
   receiver with python-hl7's ``MLLPClient`` (transport and the receiver's work only). Target ≤ 2 s.
2. signature → DiagnosticReport readable on the FHIR server (found by search on the patient's MRN and
   the accession): same measure; peer: the same transaction POSTed straight with httpx. Target ≤ 2 s.
3. 100 orders (ORM^O01 to our listener) and 100 results (ORU through the outbox) with the receiver
   answering AR to every third result the first time: lost, duplicated and delivered counts.

Run: ``.venv/bin/python bench/outbox_delivery.py`` (about a minute). The PDF is not embedded (``pdf:
none``): rendering it needs an analysed study's images and is measured by bench/report_outputs.py.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from neuronav.security.passwords import hash_password

SIGNING_PASSWORD = "quiet river stone lantern"  # the signer re-authenticates with it

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="nn-bench-outbox-"))
    os.environ["NEURONAV_DATA_DIR"] = str(tmp / "data")
    os.environ.pop("NEURONAV_DATABASE_URL", None)
    os.environ["NEURONAV_OUTBOX_INTERVAL_S"] = "1"
    os.environ["NEURONAV_OUTBOX_BACKOFF_S"] = "0.2"
    os.environ["NEURONAV_HL7_ALLOWED"] = "127.0.0.1/32"

    import httpx
    from bench._common import machine
    from hl7.client import MLLPClient
    from sqlalchemy import select
    from tests.analysis.findings_factory import make_findings
    from tests.integrations.peers import FhirServer, OruPeer

    from neuronav.config import get_settings
    from neuronav.db.models import AnalysisRow, DeliveryRow, OrderRow, StudyRow, UserRow
    from neuronav.db.session import migrate, session_scope
    from neuronav.integrations.fhir.client import post_transaction
    from neuronav.integrations.hl7.listener import Listener
    from neuronav.integrations.outbox import start_outbox
    from neuronav.report.build import build_report
    from neuronav.report.fhir import make_bundle, mrn_system
    from neuronav.report.hl7v2 import make_oru
    from neuronav.report.model import Patient
    from neuronav.security.access import Actor
    from neuronav.security.permissions import Role
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow import deliveries, reports

    print(machine())
    settings = get_settings()
    migrate(settings.database)
    store = ObjectStore.from_settings(settings)
    peer = OruPeer().start()
    fhir = FhirServer(token="bench-token").start()

    with session_scope(settings.database) as db:
        rad = UserRow(
            email="r@x.org",
            display_name="Dr R",
            role="radiologist",
            password_hash=hash_password(SIGNING_PASSWORD),
            state="active",
        )
        adm = UserRow(email="a@x.org", display_name="Adm", role="admin", password_hash="x", state="active")
        db.add_all([rad, adm])
        db.flush()
        study = StudyRow(content_sha256="0" * 64, uploaded_by=rad.id, state="done")
        db.add(study)
        db.flush()
        analysis = AnalysisRow(study_id=study.id, cache_key="k", model="m", state="done")
        db.add(analysis)
        db.flush()
        radiologist = Actor(rad.id, rad.email, Role.RADIOLOGIST, "Dr R", "s", None, "bench")
        admin = Actor(adm.id, adm.email, Role.ADMIN, "Adm", "s", None, "bench")
        study_id, analysis_id = study.id, analysis.id

    def stored_report() -> str:
        report = build_report(make_findings(), now=datetime.now(UTC))
        with session_scope(settings.database) as db:
            reports.save(db, store, report, study_id=study_id, analysis_id=analysis_id, user_id=None)
        return report.report_id

    def sign(rid: str) -> float:
        with session_scope(settings.database) as db:
            reports.sign(db, store, radiologist, rid, password=SIGNING_PASSWORD)
        return time.perf_counter()  # the commit is done: the signature is durable

    def delivered(rid: str) -> bool:
        with session_scope(settings.database) as db:
            states = list(db.scalars(select(DeliveryRow.state).where(DeliveryRow.report_id == rid)))
        return bool(states) and all(s == "delivered" for s in states)

    worker = start_outbox(settings, store)
    try:
        # 1. signature → ORU acknowledged -------------------------------------------------------------
        with session_scope(settings.database) as db:
            cfg = {"host": "127.0.0.1", "port": peer.port, "pdf": "none", "timeout_s": 10}
            deliveries.add_destination(db, store, admin, "ris", "hl7", cfg, identified=False)
        ours, direct = [], []
        for _ in range(5):
            rid = stored_report()
            t0 = sign(rid)
            while not delivered(rid):
                time.sleep(0.01)
            ours.append(time.perf_counter() - t0)
            message = make_oru(build_report(make_findings(), now=datetime.now(UTC))).encode()
            t1 = time.perf_counter()
            with MLLPClient("127.0.0.1", peer.port) as client:
                answer = client.send_message(message)
            direct.append(time.perf_counter() - t1)
            assert b"MSA|AA" in answer
        o, p = statistics.median(ours), statistics.median(direct)
        print("\nsignature → ORU acknowledged (AA) by hl7apy's MLLP server, median of 5")
        print(f"  NeuroNav (commit of the signature → delivery recorded)   {o * 1000:8.1f} ms")
        print(f"  python-hl7 MLLPClient straight to the receiver           {p * 1000:8.1f} ms")
        print(f"  ratio (ours / peer) = {o / p:.1f}   (target ours ≤ 2000 ms: {'met' if o <= 2 else 'NOT met'})")
        print(f"  (ours includes up to one poll of the outbox, interval {settings.outbox_interval_s:.0f} s)")
        with session_scope(settings.database) as db:
            deliveries.remove_destination(db, admin, "ris")

        # 2. signature → DiagnosticReport readable on the FHIR server ----------------------------------
        with session_scope(settings.database) as db:
            cfg = {"base_url": fhir.base_url, "auth": "bearer", "conditional": "client", "pdf": "none"}
            deliveries.add_destination(
                db, store, admin, "ehr", "fhir", cfg, secrets={"token": fhir.token}, identified=False
            )
        auth = {"Authorization": f"Bearer {fhir.token}"}
        ours, direct = [], []
        for n in range(5):
            rid = stored_report()
            t0 = sign(rid)
            while True:
                found = httpx.get(
                    f"{fhir.base_url}/DiagnosticReport",
                    params={"identifier": f"urn:neuronav:report|{rid}"},
                    headers=auth,
                ).json()
                if found.get("entry"):
                    break
                time.sleep(0.01)
            ours.append(time.perf_counter() - t0)
            patient = Patient(mrn=f"B{n}", mrn_issuer="BENCH", accession_number=f"BA{n}", name="Bench^Pat")
            bundle = make_bundle(
                build_report(make_findings(), now=datetime.now(UTC)).model_copy(update={"patient": patient})
            )
            t1 = time.perf_counter()
            result = post_transaction(
                {"base_url": fhir.base_url, "auth": "bearer", "conditional": "client"}, {"token": fhir.token}, bundle
            )
            pat = httpx.get(
                f"{fhir.base_url}/Patient", params={"identifier": f"{mrn_system('BENCH')}|B{n}"}, headers=auth
            )
            direct.append(time.perf_counter() - t1)
            assert result.delivered and pat.json().get("entry")
        o, p = statistics.median(ours), statistics.median(direct)
        print("\nsignature → DiagnosticReport readable on Medplum's FHIR server, median of 5")
        print(f"  NeuroNav (commit of the signature → found by search)     {o * 1000:8.1f} ms")
        print(f"  the same transaction POSTed straight (httpx) + search    {p * 1000:8.1f} ms")
        print(f"  ratio (ours / peer) = {o / p:.1f}   (target ours ≤ 2000 ms: {'met' if o <= 2 else 'NOT met'})")
        with session_scope(settings.database) as db:
            deliveries.remove_destination(db, admin, "ehr")

        # 3. 100 orders and 100 results, every third result refused once --------------------------------
        listener = Listener(settings, store, "127.0.0.1", 0).start()
        t0 = time.perf_counter()
        acks: Counter[str] = Counter()
        for n in range(100):
            orm = "\r".join(
                [
                    f"MSH|^~\\&|RIS|HOSP|NeuroNav|NEURONAV|20260105090000||ORM^O01^ORM_O01|o{n}|P|2.5",
                    f"PID|1||M{n}^^^HOSP^MR||Doe^Pat{n}||19700102|F",
                    f"ORC|NW|P{n}^EPIC",
                    f"OBR|1|P{n}^EPIC||MRBRAIN^MR Brain^L|||20260105|||||||||||A{n}",
                ]
            )
            with MLLPClient("127.0.0.1", listener.port) as client:
                answer = client.send_message(orm + "\r")
            acks[answer.split(b"MSA|")[1][:2].decode()] += 1
        listener.stop()
        orders_s = time.perf_counter() - t0
        with session_scope(settings.database) as db:
            n_orders = len(list(db.scalars(select(OrderRow.id))))

        refused: set[str] = set()
        results: Counter[str] = Counter()
        order_of_rid: dict[str, int] = {}

        def decide(control_id: str, n: int) -> str:
            message = peer.received[n - 1]
            rid = next(f.split("/")[0] for f in message.split("|") if f.startswith("NN-") and "/v" in f)
            number = order_of_rid[rid]
            if number % 3 == 2 and rid not in refused:
                refused.add(rid)
                return "AR"
            results[rid] += 1
            return "AA"

        peer.reset(decide, text="busy")
        with session_scope(settings.database) as db:
            cfg = {"host": "127.0.0.1", "port": peer.port, "pdf": "none", "timeout_s": 10}
            deliveries.add_destination(db, store, admin, "ris100", "hl7", cfg, identified=False)
        rids = [stored_report() for _ in range(100)]
        for i, rid in enumerate(rids):
            order_of_rid[rid] = i
        t0 = time.perf_counter()
        for rid in rids:
            sign(rid)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with session_scope(settings.database) as db:
                states = Counter(db.scalars(select(DeliveryRow.state).where(DeliveryRow.report_id.in_(rids))))
            if states.get("delivered", 0) == 100 or states.get("failed", 0):
                break
            time.sleep(0.1)
        results_s = time.perf_counter() - t0
        lost = [rid for rid in rids if results[rid] == 0]
        duplicated = [rid for rid in rids if results[rid] > 1]
        print("\n100 orders in (ORM^O01 → our listener, python-hl7 client) and 100 results out (ORU → hl7apy receiver)")
        print(
            f"  orders: {dict(acks)} acknowledged, {n_orders}/100 stored, in {orders_s:.2f} s "
            f"({orders_s * 10:.1f} ms each, one connection each)"
        )
        print(
            f"  results: refused once (AR) {len(refused)}, delivered {states.get('delivered', 0)}/100, "
            f"failed {states.get('failed', 0)}, lost {len(lost)}, duplicated {len(duplicated)}, in {results_s:.2f} s"
        )
    finally:
        worker.stop()
        peer.stop()
        fhir.stop()


if __name__ == "__main__":
    main()
