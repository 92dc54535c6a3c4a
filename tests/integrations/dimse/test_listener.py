"""The DICOM listener against real peers: dcmtk's echoscu and storescu, pynetdicom as a misbehaving peer.

A phantom study written as DICOM by the project's generator is sent by storescu; what the listener
stored is read back (decrypted) and compared with what was sent, element by element, by pydicom.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF
from sqlalchemy import select

from neuronav.db.models import AnalysisRow, AuditEventRow, DicomInstanceRow, StoredObjectRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.workflow.dicom import uid_digest
from tests.integrations.dimse.conftest import DicomEnv, dcmtk, phantom_files, storescu, wait_for

pytestmark = [pytest.mark.dcmtk, pytest.mark.pacs, pytest.mark.slow]


def _audit(env: DicomEnv, action: str) -> list[AuditEventRow]:
    with session_scope(env.settings.database) as db:
        rows = list(db.scalars(select(AuditEventRow).where(AuditEventRow.action == action)))
        for r in rows:
            db.expunge(r)
        return rows


def _stored_datasets(env: DicomEnv, study_id: str) -> dict[str, object]:
    with session_scope(env.settings.database) as db:
        keys = list(db.scalars(select(StoredObjectRow.key).where(StoredObjectRow.study_id == study_id)))
    found = {}
    for key in keys:
        with env.store.open(key) as reader:
            ds = dcmread(io.BytesIO(reader.readall()))
        found[str(ds.SOPInstanceUID)] = ds
    return found


def test_echoscu_storescu_and_findscu_a_study_that_is_analysed(
    dicom_env: DicomEnv, phantom_dicom: Path, tmp_path: Path
) -> None:
    echo = dcmtk("echoscu", "-aet", "STORESCU", "-aec", "NEURONAV", "127.0.0.1", dicom_env.port)
    assert echo.returncode == 0, echo.stderr

    sent = phantom_files(phantom_dicom)
    first = storescu(dicom_env.port, phantom_dicom)
    assert first.returncode == 0, first.stderr[-2000:]
    assert dicom_env.instance_count() == len(sent) == 576  # every Success answered was stored first
    wait_for(lambda: dicom_env.arrivals()[0].state != "receiving", 180, "the study to complete")
    (arrival,) = dicom_env.arrivals()
    assert (arrival.state, arrival.instances, arrival.reason) == ("received", 576, None)

    # the same path as an upload: one study row, its files the received instances, its analysis queued
    with session_scope(dicom_env.settings.database) as db:
        study = db.get(StudyRow, arrival.study_id)
        assert study is not None and study.n_files == 576
        assert set(study.sequences) >= {"T1c", "FLAIR"}
        analyses = list(db.scalars(select(AnalysisRow).where(AnalysisRow.study_id == study.id)))
        assert [a.id for a in analyses] == dicom_env.dispatched and analyses[0].state == "queued"
        assert db.scalar(select(StoredObjectRow.kind).where(StoredObjectRow.study_id == study.id)) == "upload"
    (event,) = _audit(dicom_env, "study.upload")
    assert event.detail["via"] == "dicom" and event.detail["created"] is True

    # what was stored is what was sent (pydicom compares every element of every instance)
    stored = _stored_datasets(dicom_env, arrival.study_id)
    originals = {str(ds.SOPInstanceUID): ds for ds in map(dcmread, sent)}
    assert set(stored) == set(originals)
    for uid in list(originals)[::60]:
        assert stored[uid] == originals[uid]
        assert stored[uid].PixelData == originals[uid].PixelData

    # sent again: every instance answered Success, counted once; no second study
    again = storescu(dicom_env.port, phantom_dicom)
    assert again.returncode == 0, again.stderr[-2000:]
    assert dicom_env.instance_count() == 576
    assert len(dicom_env.arrivals()) == 1
    with session_scope(dicom_env.settings.database) as db:
        assert db.query(StudyRow).count() == 1

    def counts() -> list[dict[str, object]]:
        ended = [e.detail for e in _audit(dicom_env, "dicom.association") if e.outcome == "success"]
        return [{k: d[k] for k in ("stored", "duplicates")} for d in ended]

    # the listener audits an association when it is released: storescu may return a moment before
    wait_for(lambda: {"stored": 0, "duplicates": 576} in counts(), 30, "the second association's audit")
    assert {"stored": 576, "duplicates": 0} in counts()

    # findscu (Study Root C-FIND) finds the study it sent at every level, with what was sent
    first_ds = originals[next(iter(originals))]
    study_uid, patient_id = str(first_ds.StudyInstanceUID), str(first_ds.PatientID)
    studies = _findscu(dicom_env, tmp_path / "study", "STUDY", f"PatientID={patient_id}", "StudyInstanceUID",
                       "PatientName", "StudyDate", "NumberOfStudyRelatedInstances")  # fmt: skip
    assert [str(d.StudyInstanceUID) for d in studies] == [study_uid]
    assert str(studies[0].PatientName) == str(first_ds.PatientName)
    assert int(studies[0].NumberOfStudyRelatedInstances) == 576
    by_name = _findscu(dicom_env, tmp_path / "name", "STUDY", f"PatientName={str(first_ds.PatientName)[:4]}*",
                       "StudyInstanceUID")  # fmt: skip
    assert [str(d.StudyInstanceUID) for d in by_name] == [study_uid]
    assert _findscu(dicom_env, tmp_path / "other", "STUDY", "PatientID=SOMEONE-ELSE", "StudyInstanceUID") == []
    series = _findscu(dicom_env, tmp_path / "series", "SERIES", f"StudyInstanceUID={study_uid}",
                      "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances")  # fmt: skip
    sent_series = {str(ds.SeriesInstanceUID) for ds in originals.values()}
    assert {str(d.SeriesInstanceUID) for d in series} == sent_series  # the images only: no AI result to a node
    assert {str(d.Modality) for d in series} == {"MR"}
    assert sum(int(d.NumberOfSeriesRelatedInstances) for d in series) == 576
    one = sorted(sent_series)[0]
    images = _findscu(dicom_env, tmp_path / "image", "IMAGE", f"StudyInstanceUID={study_uid}",
                      f"SeriesInstanceUID={one}", "SOPInstanceUID")  # fmt: skip
    assert {str(d.SOPInstanceUID) for d in images} == {u for u, ds in originals.items() if ds.SeriesInstanceUID == one}
    assert {"level": "study", "results": 1} in [e.detail for e in _audit(dicom_env, "dicom.find")]
    # a SERIES query without its study is refused with a failure status, not answered with everything
    refused = dcmtk("findscu", "-v", "-S", "-aet", "STORESCU", "-aec", "NEURONAV", "-k", "QueryRetrieveLevel=SERIES",
                    "-k", "SeriesInstanceUID", "127.0.0.1", dicom_env.port)  # fmt: skip
    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in refused.stderr, refused.stderr[-2000:]


def _findscu(env: DicomEnv, out: Path, level: str, *keys: str) -> list[Dataset]:
    """dcmtk findscu (Study Root) with ``keys``; its responses read back from the files it extracts."""
    out.mkdir(parents=True)
    args = ["-S", "-aet", "STORESCU", "-aec", "NEURONAV", "-X", "-od", str(out), "-k", f"QueryRetrieveLevel={level}"]
    for key in keys:
        args += ["-k", key]
    done = dcmtk("findscu", *args, "127.0.0.1", env.port)
    assert done.returncode == 0, done.stderr[-2000:]
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_a_study_that_is_not_a_brain_mr_is_kept_with_the_reason(dicom_env: DicomEnv, phantom_dicom: Path) -> None:
    """The routing rule: one T1 series alone (no T1c, FLAIR or T2) is stored, not analysed, listed with why."""
    t1 = next(p for p in sorted(phantom_dicom.iterdir()) if p.name.endswith("_T1"))
    assert storescu(dicom_env.port, t1).returncode == 0
    wait_for(lambda: dicom_env.arrivals()[0].state != "receiving", 120, "the study to complete")
    (arrival,) = dicom_env.arrivals()
    assert arrival.state == "kept" and arrival.study_id is None
    assert arrival.reason is not None and "not an analysable brain MRI study" in arrival.reason
    assert dicom_env.instance_count() == len(phantom_files(t1)) and dicom_env.dispatched == []
    (event,) = _audit(dicom_env, "dicom.study")
    assert event.detail["state"] == "kept"


def test_an_instance_after_its_study_was_completed_starts_a_new_arrival(
    dicom_env: DicomEnv, phantom_dicom: Path
) -> None:
    """A late series of a study completed already is not lost and does not reopen the completed arrival:
    it starts an arrival of its own, completed when stable (workflow/dicom.py's module docstring)."""
    t1, flair = (next(p for p in sorted(phantom_dicom.iterdir()) if p.name.endswith(s)) for s in ("_T1", "_FLAIR"))
    assert storescu(dicom_env.port, t1).returncode == 0
    wait_for(lambda: dicom_env.arrivals()[0].state != "receiving", 120, "the first arrival to complete")
    (first,) = dicom_env.arrivals()
    assert first.state == "kept"
    late = phantom_files(flair)[:3]
    assert storescu(dicom_env.port, *late).returncode == 0
    wait_for(lambda: len(dicom_env.arrivals()) == 2, 30, "a second arrival")
    wait_for(lambda: dicom_env.arrivals()[1].state != "receiving", 120, "the second arrival to complete")
    again, second = dicom_env.arrivals()
    assert (again.id, again.state, again.instances) == (first.id, "kept", len(phantom_files(t1)))
    assert second.id != first.id and second.instances == len(late)
    assert second.study_uid_digest == first.study_uid_digest  # the same StudyInstanceUID
    assert dicom_env.instance_count() == len(phantom_files(t1)) + len(late)


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        (None, "is not a registered DICOM node"),
        (("faraway", "STORESCU", "192.0.2.10", True), "not from its registered host"),
        (("printer", "STORESCU", "127.0.0.1", False), "may not send studies"),
    ],
)
def test_a_sender_not_allowed_is_refused_at_association(
    make_dicom_env: Callable[..., DicomEnv], node: tuple[str, str, str, bool] | None, reason: str
) -> None:
    env = make_dicom_env()
    if node is not None:
        env.add_node(node[0], node[1], node[2], incoming=node[3])
    echo = dcmtk("echoscu", "-aet", "STORESCU", "-aec", "NEURONAV", "127.0.0.1", env.port)
    assert echo.returncode != 0
    said = echo.stdout + echo.stderr
    assert "Association Rejected" in said and "Calling AE Title Not Recognized" in said  # dcmtk's words
    (event,) = _audit(env, "dicom.association")
    assert event.outcome == "denied" and reason in event.detail["reason"]
    assert event.client == "STORESCU@127.0.0.1"


def _partial_store(assoc: object, path: Path, fraction: float) -> None:
    """Send the C-STORE request of ``path`` and only ``fraction`` of its P-DATA PDUs, as a peer that stops."""
    ds = dcmread(path)
    req = C_STORE()
    req.MessageID = 99
    req.AffectedSOPClassUID = ds.SOPClassUID
    req.AffectedSOPInstanceUID = ds.SOPInstanceUID
    req.Priority = 2
    req.DataSet = io.BytesIO(encode(ds, False, True))
    msg = C_STORE_RQ()
    msg.primitive_to_message(req)
    context = assoc.accepted_contexts[0].context_id  # type: ignore[attr-defined]
    pdus = list(msg.encode_msg(context, 4096))
    raw = assoc.dul.socket.socket  # type: ignore[attr-defined]
    for primitive in pdus[: max(2, int(len(pdus) * fraction))]:
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        raw.sendall(pdu.encode())


def _scu(port: int) -> object:
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="NEURONAV")
    assert assoc.is_established
    return assoc


def test_a_peer_that_drops_mid_transfer_keeps_what_was_acknowledged(dicom_env: DicomEnv, phantom_dicom: Path) -> None:
    files = phantom_files(next(p for p in sorted(phantom_dicom.iterdir()) if p.name.endswith("_T1")))[:4]
    assoc = _scu(dicom_env.port)
    for f in files[:3]:
        assert assoc.send_c_store(dcmread(f)).Status == 0x0000  # type: ignore[attr-defined]
    _partial_store(assoc, files[3], 0.5)
    assoc.dul.socket.socket.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]  # the peer is gone
    assoc.kill()  # type: ignore[attr-defined]
    wait_for(lambda: any(e.outcome == "success" for e in _audit(dicom_env, "dicom.association")), 30, "the close")
    with session_scope(dicom_env.settings.database) as db:
        held = set(db.scalars(select(DicomInstanceRow.sop_uid_digest)))
    acknowledged = {uid_digest(dicom_env.settings, str(dcmread(f).SOPInstanceUID)) for f in files[:3]}
    assert held == acknowledged  # the three answered Success, not the one cut off
    (ended,) = [e.detail for e in _audit(dicom_env, "dicom.association") if e.outcome == "success"]
    assert ended["stored"] == 3 and ended["ended"] == "aborted"


def test_stalled_peers_are_timed_out(dicom_env: DicomEnv, phantom_dicom: Path) -> None:
    """ACSE timeout (connects, never asks), network timeout (associated, silent), DIMSE timeout (a
    C-STORE begun, never finished): each cut off by the listener, nothing half-received stored."""
    with socket.create_connection(("127.0.0.1", dicom_env.port), timeout=60) as silent:
        assert silent.recv(1) == b""  # closed by the listener (acse timeout 2 s; the bound is only a guard)

    idle = _scu(dicom_env.port)
    wait_for(lambda: idle.is_aborted or not idle.is_alive(), 60, "the idle association to be aborted")  # type: ignore[attr-defined]

    stalled = _scu(dicom_env.port)
    t1 = next(p for p in sorted(phantom_dicom.iterdir()) if p.name.endswith("_T1"))
    _partial_store(stalled, phantom_files(t1)[0], 0.5)
    wait_for(lambda: stalled.is_aborted or not stalled.is_alive(), 60, "the stalled C-STORE to be aborted")  # type: ignore[attr-defined]
    time.sleep(0.5)
    assert dicom_env.instance_count() == 0


def test_limits_on_instance_size_and_association_volume(
    make_dicom_env: Callable[..., DicomEnv], phantom_dicom: Path
) -> None:
    files = phantom_files(next(p for p in sorted(phantom_dicom.iterdir()) if p.name.endswith("_T1")))[:3]
    size = max(f.stat().st_size for f in files)
    env = make_dicom_env(NEURONAV_DICOM_MAX_ASSOCIATION_BYTES=str(int(size * 2.5)))
    env.add_node("scanner", "STORESCU")
    assoc = _scu(env.port)
    statuses = [assoc.send_c_store(dcmread(f)).Status for f in files]  # type: ignore[attr-defined]
    assoc.release()  # type: ignore[attr-defined]
    assert statuses == [0x0000, 0x0000, 0xA700]  # Refused: Out of Resources once over the volume
    assert env.instance_count() == 2

    small = make_dicom_env(NEURONAV_DICOM_MAX_INSTANCE_BYTES="1024")
    small.add_node("scanner", "STORESCU")
    assoc = _scu(small.port)
    rsp = assoc.send_c_store(dcmread(files[0]))  # type: ignore[attr-defined]
    assoc.release()  # type: ignore[attr-defined]
    assert rsp.Status == 0xA700 and "UploadTooLargeError" in rsp.ErrorComment
    assert small.instance_count() == 0


def test_a_file_that_fails_the_upload_checks_is_refused(dicom_env: DicomEnv, phantom_dicom: Path) -> None:
    """The same header checks as an upload: an instance whose pixel data is shorter than its header says
    (truncated) is answered 0xC000 Cannot understand, and not stored."""
    path = phantom_files(next(p for p in sorted(phantom_dicom.iterdir()) if p.name.endswith("_T1")))[0]
    ds = dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    assoc = _scu(dicom_env.port)
    rsp = assoc.send_c_store(ds)  # type: ignore[attr-defined]
    assoc.release()  # type: ignore[attr-defined]
    assert rsp.Status == 0xC000
    assert dicom_env.instance_count() == 0


SAMPLES = [
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_jp2klossless.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "image_dfl.dcm",
]


def _legacy_enhanced_mr(phantom: Path, out: Path) -> Path:
    """An enhanced (Legacy Converted Enhanced MR) multi-frame instance made by highdicom from a phantom series."""
    from highdicom.legacy import LegacyConvertedEnhancedMRImage
    from pydicom.uid import generate_uid

    t1 = next(p for p in sorted(phantom.iterdir()) if p.name.endswith("_T1"))
    frames = [dcmread(p) for p in phantom_files(t1)[:8]]
    image = LegacyConvertedEnhancedMRImage(frames, generate_uid(), 901, generate_uid(), 1)
    path = out / "enhanced.dcm"
    image.save_as(path)
    return path


def test_mr_classic_and_enhanced_and_other_classes_are_stored_as_sent(
    dicom_env: DicomEnv, phantom_dicom: Path, tmp_path: Path
) -> None:
    """Each file proposed in its own transfer syntax only (compressed, big endian, deflated): accepted,
    and stored in that syntax, the data set unchanged (pydicom compares them)."""
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    paths = [Path(str(get_testdata_file(n, download=False))) for n in SAMPLES]
    paths.append(_legacy_enhanced_mr(phantom_dicom, tmp_path))
    sent = {}
    for path in paths:
        ds = dcmread(path)
        ds.SOPInstanceUID = generate_uid()  # pydicom's MR_small_* files share one UID (counted once otherwise)
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", dicom_env.port, ae_title="NEURONAV")
        assert assoc.is_established, path.name
        status = assoc.send_c_store(ds).Status
        assoc.release()
        assert status == 0x0000, (path.name, hex(status))
        sent[str(ds.SOPInstanceUID)] = (path.name, ds)
    with session_scope(dicom_env.settings.database) as db:
        keys = list(db.scalars(select(DicomInstanceRow.object_key)))
    stored = {}
    for key in keys:
        with dicom_env.store.open(key) as reader:
            got = dcmread(io.BytesIO(reader.readall()))
        stored[str(got.SOPInstanceUID)] = got
    assert set(stored) == set(sent)
    for uid, (name, original) in sent.items():
        got = stored[uid]
        assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID, name
        assert got.PixelData == original.PixelData and got == original, name


def test_associations_over_the_limit_are_refused(make_dicom_env: Callable[..., DicomEnv]) -> None:
    env = make_dicom_env(NEURONAV_DICOM_MAX_ASSOCIATIONS="1", NEURONAV_DICOM_NETWORK_TIMEOUT_S="30")
    env.add_node("scanner", "STORESCU")
    held = _scu(env.port)
    try:
        echo = dcmtk("echoscu", "-aet", "STORESCU", "-aec", "NEURONAV", "127.0.0.1", env.port)
        assert echo.returncode != 0
        said = echo.stdout + echo.stderr
        assert "Association Rejected" in said and "Local Limit Exceeded" in said, said
    finally:
        held.release()  # type: ignore[attr-defined]
    wait_for(
        lambda: dcmtk("echoscu", "-aet", "STORESCU", "-aec", "NEURONAV", "127.0.0.1", env.port).returncode == 0,
        30,
        "an association once the first is released",
    )
