"""Results back into PACS, end to end, against Orthanc (Debian's, with its DICOMweb plugin):

Orthanc sends the phantom study to NeuroNav's listener by C-STORE (its REST ``/modalities/…/store``) →
stable age (1 s here) → the study is analysed by the service path (:func:`neuronav.workflow.jobs.run_analysis`,
what a worker runs) → the outbox delivers SEG, SR and Encapsulated PDF by C-STORE to Orthanc, the node the
study came from (``default_route``), and they are found by Orthanc's REST API in the same StudyInstanceUID.
A resend of the same version adds nothing to Orthanc (same SOP Instance UIDs). A node that is down is
retried then failed; an admin's resend reaches it once it is up (a pynetdicom storage SCP answering the
statuses the test chooses). The signed report and its amendment go by STOW-RS to Orthanc's DICOMweb: each
a new series, the amendment's SR naming the signed version's SR in its Predecessor Documents Sequence.

The analysis runs once for the module (a minute on a laptop): the tests below share it, in file order.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from sqlalchemy import select

from neuronav.db.models import AnalysisRow, AuditEventRow, DeliveryRow, DestinationRow, ReportRow, UserRow, utcnow
from neuronav.db.session import migrate, session_scope
from neuronav.integrations.dimse.listener import Listener
from neuronav.integrations.outbox import deliver_due
from neuronav.security.access import Actor
from neuronav.security.passwords import hash_password
from neuronav.security.permissions import Role
from neuronav.storage.store import ObjectStore
from neuronav.workflow import deliveries, jobs, reports
from neuronav.workflow.nodes import NodeIn, add_node
from tests.dicom_validate import assert_valid, dciodvfy, pixelmed_sr
from tests.integrations.dimse.conftest import dicom_settings, phantom_files, wait_for
from tests.peers import Orthanc, free_port

pytestmark = [pytest.mark.pacs, pytest.mark.slow]

PASSWORD = "quiet river stone lantern"


@dataclass
class Scp:
    """A storage SCP on ``port`` answering the next status of ``statuses`` (then Success) per C-STORE."""

    port: int
    statuses: list[int] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    server: Any = None

    def start(self) -> Scp:
        def on_store(event: evt.Event) -> int:
            self.received.append(str(event.dataset.SOPInstanceUID))
            return self.statuses.pop(0) if self.statuses else 0x0000

        ae = AE(ae_title="FLAKY")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


@dataclass
class Pacs:
    settings: Any
    store: ObjectStore
    orthanc: Orthanc
    study_uid: str
    orthanc_study: str
    report_id: str
    radiologist: Actor
    flaky_port: int
    source_count: int


def _deliveries(p: Pacs) -> list[DeliveryRow]:
    with session_scope(p.settings.database) as db:
        rows = list(db.scalars(select(DeliveryRow).order_by(DeliveryRow.created_at, DeliveryRow.output)))
        db.expunge_all()
        return rows


def _of(p: Pacs, destination: str) -> list[DeliveryRow]:
    with session_scope(p.settings.database) as db:
        dest = db.scalars(select(DestinationRow).where(DestinationRow.name == destination)).one()
        rows = list(db.scalars(select(DeliveryRow).where(DeliveryRow.destination_id == dest.id)))
        db.expunge_all()
        return sorted(rows, key=lambda r: (r.report_version, r.event != "preliminary", r.output))


def _make_due(p: Pacs) -> None:
    with session_scope(p.settings.database) as db:
        for d in db.scalars(select(DeliveryRow).where(DeliveryRow.state == "queued")):
            d.next_attempt_at = utcnow() - timedelta(seconds=1)


def _series(p: Pacs) -> list[dict[str, Any]]:
    """The study's series as Orthanc's index holds them (its REST API)."""
    return list(p.orthanc.rest("GET", f"/studies/{p.orthanc_study}/series"))


def _instances(p: Pacs, series: dict[str, Any]) -> list[Dataset]:
    return [dcmread(io.BytesIO(p.orthanc.rest("GET", f"/instances/{i}/file"))) for i in series["Instances"]]


def _orthanc_id(p: Pacs, sop_instance_uid: str) -> str:
    (found,) = p.orthanc.rest(
        "POST", "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}}
    )
    return str(found)


@pytest.fixture(scope="module")
def pacs(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    from neuronav.phantom import generate_study

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("pacs-round-trip")
    generate_study(root / "phantom", seed=7, fmt="dicom", profile="clinical")
    files = phantom_files(root / "phantom" / "dicom")
    settings = dicom_settings(
        root, mp, NEURONAV_OUTBOX_BACKOFF_S="0.01", NEURONAV_OUTBOX_MAX_ATTEMPTS="2", NEURONAV_DICOM_STABLE_AGE="1"
    )
    migrate(settings.database)
    store = ObjectStore.from_settings(settings)
    dispatched: list[str] = []
    mp.setattr(jobs, "dispatch", lambda _s, analysis_id: dispatched.append(analysis_id))
    listener = Listener(settings, store, host="127.0.0.1", port=0)
    listener.start()
    flaky_port = free_port()
    try:
        with session_scope(settings.database) as db:
            add_node(db, None, NodeIn(
                name="orthanc", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port, incoming=True,
                send=["seg", "sr", "epdf"], send_on=["preliminary"], default_route=True,
            ))  # fmt: skip
            add_node(db, None, NodeIn(
                name="flaky", ae_title="FLAKY", host="127.0.0.1", port=flaky_port, send=["sr"], send_on=["preliminary"]
            ))  # fmt: skip
            rad = UserRow(email="rad@example.org", display_name="Dr Rad", role="radiologist",
                          password_hash=hash_password(PASSWORD), state="active")  # fmt: skip
            db.add(rad)
            db.flush()
            radiologist = Actor(id=rad.id, email=rad.email, role=Role.RADIOLOGIST, display_name="Dr Rad",
                                session_id="s", breakglass=None, client="test")  # fmt: skip
        orthanc.clear()
        orthanc.set_modality("neuronav", "NEURONAV", "127.0.0.1", listener.address[1])
        ids = orthanc.upload(files)
        study = orthanc.rest("GET", f"/instances/{ids[0]}/study")["ID"]
        job = orthanc.rest("POST", "/modalities/neuronav/store", {"Resources": [study], "Synchronous": True})
        assert job["FailedInstancesCount"] == 0
        wait_for(lambda: len(dispatched) == 1, 300, "the study to complete and its analysis to start")
        assert jobs.run_analysis(dispatched[0], settings) == "done"
        with session_scope(settings.database) as db:
            analysis = db.get(AnalysisRow, dispatched[0])
            assert analysis is not None
            report_row = db.scalars(select(ReportRow).where(ReportRow.analysis_id == analysis.id)).one()
            report_id = report_row.id
        yield Pacs(
            settings, store, orthanc, str(dcmread(files[0]).StudyInstanceUID), study, report_id, radiologist,
            flaky_port, len(files),
        )  # fmt: skip
    finally:
        listener.stop()
        mp.undo()


def test_seg_sr_and_pdf_arrive_back_in_orthanc_and_a_resend_adds_nothing(pacs: Pacs) -> None:
    mine = _of(pacs, "orthanc")
    assert [(d.output, d.event, d.state) for d in mine] == [
        ("epdf", "preliminary", "queued"), ("seg", "preliminary", "queued"), ("sr", "preliminary", "queued"),
    ]  # fmt: skip
    deliver_due(pacs.settings, pacs.store)
    mine = _of(pacs, "orthanc")
    assert [(d.state, d.peer_status) for d in mine] == [("delivered", "C-STORE 0x0000")] * 3
    results = {s["MainDicomTags"]["Modality"]: s for s in _series(pacs) if s["MainDicomTags"]["Modality"] != "MR"}
    assert set(results) == {"SEG", "SR", "DOC"}  # found by Orthanc's REST API, in the same study
    sent: dict[str, Dataset] = {}
    for modality, series in results.items():
        (ds,) = _instances(pacs, series)
        assert ds.StudyInstanceUID == pacs.study_uid
        sent[modality] = ds
    assert sent["DOC"].MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(sent["DOC"].EncapsulatedDocument).startswith(b"%PDF")
    assert sent["SEG"].SegmentSequence and sent["SR"].ContentSequence
    total = len(pacs.orthanc.sop_instance_uids())
    assert total == pacs.source_count + 3
    # the report page and the admin's list show where the outputs went
    with session_scope(pacs.settings.database) as db:
        shown = reports.read_deliveries(db, pacs.store, pacs.radiologist, pacs.report_id)
        listed = deliveries.list_deliveries(db, None, state="delivered")
    assert {(s.destination, s.kind, s.output, s.state) for s in shown if s.destination == "orthanc"} == {
        ("orthanc", "dicom", o, "delivered") for o in ("seg", "sr", "epdf")
    }
    assert {d.id for d in listed} == {d.id for d in mine}
    # a re-export of the same version: the same SOP Instance UIDs, nothing added in Orthanc
    uids = pacs.orthanc.sop_instance_uids()
    with session_scope(pacs.settings.database) as db:
        for d in mine:
            deliveries.resend(db, None, d.id)
    deliver_due(pacs.settings, pacs.store)
    assert [(d.state, d.attempts) for d in _of(pacs, "orthanc")] == [("delivered", 1)] * 3
    assert pacs.orthanc.sop_instance_uids() == uids


def test_a_node_down_is_retried_then_failed_and_an_admin_resend_reaches_it(pacs: Pacs) -> None:
    (d,) = _of(pacs, "flaky")  # nobody listens on its port: retried until NEURONAV_OUTBOX_MAX_ATTEMPTS (2)
    while d.state == "queued":
        _make_due(pacs)
        deliver_due(pacs.settings, pacs.store)
        (d,) = _of(pacs, "flaky")
    assert (d.output, d.state, d.attempts, d.peer_status) == ("sr", "failed", 2, "unreachable")
    assert d.error and "unreachable" in d.error
    scp = Scp(pacs.flaky_port, statuses=[0xA700]).start()  # up again, out of resources once
    try:
        with session_scope(pacs.settings.database) as db:
            deliveries.resend(db, None, d.id)
        deliver_due(pacs.settings, pacs.store)
        (d,) = _of(pacs, "flaky")
        assert (d.state, d.peer_status) == ("queued", "C-STORE 0xA700")
        _make_due(pacs)
        deliver_due(pacs.settings, pacs.store)
        (d,) = _of(pacs, "flaky")
        assert (d.state, d.attempts, d.peer_status) == ("delivered", 2, "C-STORE 0x0000")
        assert len(scp.received) == 2 and len(set(scp.received)) == 1  # the same SR instance both times
        scp.statuses = [0xC000]  # a peer that cannot understand it: failed at once, not retried
        with session_scope(pacs.settings.database) as db:
            deliveries.resend(db, None, d.id)
        deliver_due(pacs.settings, pacs.store)
        (d,) = _of(pacs, "flaky")
        assert (d.state, d.attempts, d.peer_status) == ("failed", 1, "C-STORE 0xC000")
    finally:
        scp.stop()
    with session_scope(pacs.settings.database) as db:
        actions = [
            a.action for a in db.scalars(select(AuditEventRow).order_by(AuditEventRow.seq)) if a.target_id == d.id
        ]
    assert {"delivery.retry", "delivery.fail", "delivery.resend", "delivery.sent"} <= set(actions)


def test_signature_and_amendment_go_by_stow_rs_as_new_series_naming_the_old(pacs: Pacs, tmp_path: Path) -> None:
    assert pacs.orthanc.rest("GET", "/plugins").count("dicom-web") == 1
    with session_scope(pacs.settings.database) as db:
        deliveries.add_destination(
            db, pacs.store, None, "orthanc-web", "dicomweb", {"base_url": f"{pacs.orthanc.url}/dicom-web"},
            outputs=["sr"], events=["final", "amendment"],
        )  # fmt: skip
        reports.sign(db, pacs.store, pacs.radiologist, pacs.report_id, password=PASSWORD)
    before = pacs.orthanc.sop_instance_uids()
    deliver_due(pacs.settings, pacs.store)
    (final,) = _of(pacs, "orthanc-web")
    assert (final.event, final.state, final.peer_status) == ("final", "delivered", "HTTP 200")
    assert [d.event for d in _of(pacs, "orthanc")] == ["preliminary"] * 3  # this node takes preliminary only
    (final_uid,) = pacs.orthanc.sop_instance_uids() - before
    with session_scope(pacs.settings.database) as db:
        reports.amend(db, pacs.store, pacs.radiologist, pacs.report_id, "laterality corrected")
    with session_scope(pacs.settings.database) as db:
        reports.sign(db, pacs.store, pacs.radiologist, pacs.report_id, password=PASSWORD)
    before = pacs.orthanc.sop_instance_uids()
    deliver_due(pacs.settings, pacs.store)
    amendment = [d for d in _of(pacs, "orthanc-web") if d.event == "amendment"]
    assert [(d.report_version, d.state) for d in amendment] == [(2, "delivered")]
    (amended_uid,) = pacs.orthanc.sop_instance_uids() - before
    srs = {}
    for series in _series(pacs):
        if series["MainDicomTags"]["Modality"] == "SR":
            (ds,) = _instances(pacs, series)
            srs[str(ds.SOPInstanceUID)] = ds
    assert len(srs) == 3  # preliminary (C-STORE), final and amendment (STOW-RS): three series
    assert len({ds.SeriesInstanceUID for ds in srs.values()}) == 3
    old, new = srs[final_uid], srs[amended_uid]
    assert new.StudyInstanceUID == old.StudyInstanceUID == pacs.study_uid
    (pred,) = new.PredecessorDocumentsSequence
    assert pred.StudyInstanceUID == pacs.study_uid
    (ref_series,) = pred.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == old.SeriesInstanceUID
    (ref,) = ref_series.ReferencedSOPSequence
    assert (ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID) == (old.SOPInstanceUID, old.SOPClassUID)
    assert "PredecessorDocumentsSequence" not in old
    assert new.VerificationFlag == "VERIFIED" and new.CompletionFlag == "COMPLETE"
    (tmp_path / "amended-sr.dcm").write_bytes(
        pacs.orthanc.rest("GET", f"/instances/{_orthanc_id(pacs, amended_uid)}/file")
    )
    verdict = pixelmed_sr(tmp_path / "amended-sr.dcm")  # as Orthanc holds it: still TID 1500, dciodvfy clean
    assert "Found Root Template TID_1500" in verdict.output
    assert_valid([verdict, dciodvfy(tmp_path / "amended-sr.dcm")])
    # STOW-RS of the same version again: Orthanc keeps one copy
    with session_scope(pacs.settings.database) as db:
        deliveries.resend(db, None, amendment[0].id)
    held = pacs.orthanc.sop_instance_uids()
    deliver_due(pacs.settings, pacs.store)
    assert [d.state for d in _of(pacs, "orthanc-web")] == ["delivered", "delivered"]
    assert pacs.orthanc.sop_instance_uids() == held


def test_stow_rs_refused_by_the_peer_is_failed_with_its_answer(pacs: Pacs) -> None:
    with session_scope(pacs.settings.database) as db:
        deliveries.add_destination(
            db, pacs.store, None, "nowhere", "dicomweb", {"base_url": f"{pacs.orthanc.url}/no-such-root"},
            outputs=["sr"], events=["amendment"],
        )  # fmt: skip
        report = reports.load(db, pacs.store, pacs.report_id)
        deliveries.enqueue(db, report, study_id=None)
    deliver_due(pacs.settings, pacs.store)
    (d,) = _of(pacs, "nowhere")
    assert (d.state, d.attempts, d.peer_status) == ("failed", 1, "HTTP 404")  # a wrong URL: not retried
