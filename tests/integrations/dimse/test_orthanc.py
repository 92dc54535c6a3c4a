"""NeuroNav and Orthanc (Debian's, with the DICOMweb plugin) on the DICOM network, both ways:

* Orthanc sends a phantom study to the listener by C-STORE (its REST API, ``/modalities/…/store``),
  NeuroNav receives it as a study and starts its analysis;
* NeuroNav's C-STORE sender delivers files to Orthanc, which lists them (its own index read them back);
  the sender's errors (refused, unreachable, timeout, failure status) are clear.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from neuronav.config import load_settings
from neuronav.db.models import AnalysisRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.integrations.dimse.errors import DicomNetworkError
from neuronav.integrations.dimse.scu import Peer, send_files, send_to_node
from tests.integrations.dimse.conftest import DicomEnv, phantom_files, wait_for
from tests.peers import Orthanc

pytestmark = [pytest.mark.pacs, pytest.mark.slow]


def _series(phantom: Path, name: str) -> list[Path]:
    return phantom_files(next(p for p in sorted(phantom.iterdir()) if p.name.endswith(f"_{name}")))


def test_orthanc_sends_a_study_by_c_store(
    make_dicom_env: Callable[..., DicomEnv], orthanc: Orthanc, phantom_dicom: Path
) -> None:
    env = make_dicom_env()
    env.add_node("orthanc", orthanc.aet)
    orthanc.clear()
    orthanc.set_modality("neuronav", "NEURONAV", "127.0.0.1", env.port)
    files = phantom_files(phantom_dicom)
    ids = orthanc.upload(files)
    study = orthanc.rest("GET", f"/instances/{ids[0]}/study")["ID"]
    job = orthanc.rest("POST", "/modalities/neuronav/store", {"Resources": [study], "Synchronous": True})
    assert job["InstancesCount"] == len(files) == 576 and job["FailedInstancesCount"] == 0
    assert env.instance_count() == 576
    wait_for(lambda: env.arrivals()[0].state != "receiving", 180, "the study to complete")
    (arrival,) = env.arrivals()
    assert arrival.state == "received"
    with session_scope(env.settings.database) as db:
        row = db.get(StudyRow, arrival.study_id)
        assert row is not None and row.n_files == 576
        assert db.scalars(select(AnalysisRow.id).where(AnalysisRow.study_id == row.id)).all() == env.dispatched


def test_the_sender_delivers_to_orthanc_and_a_resend_adds_nothing(orthanc: Orthanc, phantom_dicom: Path) -> None:
    orthanc.clear()
    assert "dicom-web" in orthanc.rest("GET", "/plugins")  # the shared peer carries its DICOMweb plugin
    files = _series(phantom_dicom, "FLAIR")[:6]
    peer = Peer(orthanc.aet, "127.0.0.1", orthanc.dicom_port)
    result = send_files(peer, files, calling_ae="NEURONAV")
    uids = {str(dcmread(f).SOPInstanceUID) for f in files}
    assert result.delivered and {s.sop_instance_uid for s in result.statuses} == uids
    assert all(s.status == 0x0000 for s in result.statuses)
    assert orthanc.sop_instance_uids() == uids  # Orthanc's own index read them
    again = send_to_node(load_settings(), peer, files)  # as the outbox sends: NeuroNav's AE title and timeouts
    assert again.delivered and orthanc.sop_instance_uids() == uids  # same SOP Instance UIDs: no duplicates
    # Orthanc's copy is the file sent, element by element (fetched back through its REST API)
    one = dcmread(files[0])
    (found,) = orthanc.rest(
        "POST", "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": one.SOPInstanceUID}}
    )
    back = dcmread(io.BytesIO(orthanc.rest("GET", f"/instances/{found}/file")))
    assert back.PixelData == one.PixelData and back.SeriesInstanceUID == one.SeriesInstanceUID


def test_the_sender_names_a_refused_association(make_dicom_env: Callable[..., DicomEnv], phantom_dicom: Path) -> None:
    env = make_dicom_env()  # no node registered: every calling AE is refused
    with pytest.raises(DicomNetworkError, match="refused the association") as caught:
        send_files(Peer("NEURONAV", "127.0.0.1", env.port), _series(phantom_dicom, "T1")[:1], calling_ae="UNKNOWN")
    assert caught.value.failure == "refused"


def test_the_sender_names_a_failure_status(make_dicom_env: Callable[..., DicomEnv], phantom_dicom: Path) -> None:
    env = make_dicom_env(NEURONAV_DICOM_MAX_INSTANCE_BYTES="1024")
    env.add_node("neuronav", "NEURONAV")
    with pytest.raises(DicomNetworkError, match=r"failure status 0xA700 for 2 of 2") as caught:
        send_files(Peer("NEURONAV", "127.0.0.1", env.port), _series(phantom_dicom, "T1")[:2], calling_ae="NEURONAV")
    assert caught.value.failure == "status" and caught.value.status == 0xA700


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a stalled peer)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_the_sender_names_a_timeout_and_an_unreachable_peer(silent_server: int, phantom_dicom: Path) -> None:
    files = _series(phantom_dicom, "T1")[:1]
    with pytest.raises(DicomNetworkError, match="did not answer the association request within 1 s") as caught:
        send_files(Peer("SILENT", "127.0.0.1", silent_server), files, calling_ae="NEURONAV", acse_timeout=1)
    assert caught.value.failure == "timeout"
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(DicomNetworkError, match="unreachable") as caught:
        send_files(Peer("NOBODY", "127.0.0.1", port), files, calling_ae="NEURONAV", acse_timeout=1)
    assert caught.value.failure == "unreachable"
