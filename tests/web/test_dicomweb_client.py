"""DICOMweb as an OHIF-style client uses it: ``dicomweb-client`` (from PyPI) against the real service.

Shares the browser tests' live server and analysed study (same xdist group), so no second analysis runs.
"""

from __future__ import annotations

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import ComprehensiveSRStorage, EncapsulatedPDFStorage, SegmentationStorage

from neuronav.db.models import AuditEventRow
from neuronav.db.session import session_scope
from tests.web.conftest import LiveServer, Studies

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

SR_CLASSES = {ComprehensiveSRStorage, "1.2.840.10008.5.1.4.1.1.88.34"}  # Comprehensive, Comprehensive 3D


def client(server: LiveServer, role: str) -> DICOMwebClient:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {server.token(role)}"
    return DICOMwebClient(url=f"{server.url}/dicomweb", session=session)


def test_a_reader_lists_fetches_and_reads_back_the_results(live_server: LiveServer, analysed_study: Studies) -> None:
    dw = client(live_server, "radiologist")
    studies = [pydicom.Dataset.from_json(s) for s in dw.search_for_studies()]
    assert len(studies) == 2  # the current study and its prior
    for ds in studies:
        assert ds.PatientID and str(ds.PatientName) and ds.AccessionNumber and ds.ModalitiesInStudy == "MR"
    study = studies[0]
    uid = str(study.StudyInstanceUID)
    by_id = [pydicom.Dataset.from_json(s) for s in dw.search_for_studies(search_filters={"PatientID": study.PatientID})]
    assert {str(s.StudyInstanceUID) for s in by_id} == {str(s.StudyInstanceUID) for s in studies}  # one patient
    assert [
        str(pydicom.Dataset.from_json(s).StudyInstanceUID)
        for s in dw.search_for_studies(search_filters={"StudyInstanceUID": uid})
    ] == [uid]

    series = [pydicom.Dataset.from_json(s) for s in dw.search_for_series(uid)]
    modalities = sorted(str(s.Modality) for s in series)
    assert modalities.count("MR") >= 4 and "SEG" in modalities and "SR" in modalities and "DOC" in modalities
    metadata = dw.retrieve_study_metadata(uid)
    assert len(metadata) == sum(int(s.NumberOfSeriesRelatedInstances) for s in series)

    seg_series = next(s for s in series if s.Modality == "SEG")
    (seg,) = dw.retrieve_series(uid, str(seg_series.SeriesInstanceUID))
    assert seg.SOPClassUID == SegmentationStorage and str(seg.StudyInstanceUID) == uid
    referenced = {str(r.SeriesInstanceUID) for r in seg.ReferencedSeriesSequence}
    mr_series = {str(s.SeriesInstanceUID) for s in series if s.Modality == "MR"}
    assert referenced and referenced <= mr_series  # the SEG is about images of this study
    sr_series = next(s for s in series if s.Modality == "SR")
    (sr,) = dw.retrieve_series(uid, str(sr_series.SeriesInstanceUID))
    assert sr.SOPClassUID in SR_CLASSES and str(sr.StudyInstanceUID) == uid
    doc = next(s for s in series if s.Modality == "DOC")
    (pdf,) = dw.retrieve_series(uid, str(doc.SeriesInstanceUID))
    assert pdf.SOPClassUID == EncapsulatedPDFStorage and bytes(pdf.EncapsulatedDocument).startswith(b"%PDF")

    again = [pydicom.Dataset.from_json(s) for s in dw.search_for_series(uid)]
    assert {str(s.SeriesInstanceUID) for s in again} == {str(s.SeriesInstanceUID) for s in series}  # stable UIDs
    one = dw.retrieve_instance(uid, str(seg_series.SeriesInstanceUID), str(seg.SOPInstanceUID))
    assert one.SOPInstanceUID == seg.SOPInstanceUID

    with session_scope(live_server.settings.database) as db:
        actions = {e.action for e in db.query(AuditEventRow).filter(AuditEventRow.action.like("dicomweb.%"))}
    assert {"dicomweb.query", "dicomweb.retrieve"} <= actions


def test_unsigned_results_are_not_served_to_a_neurologist(live_server: LiveServer, analysed_study: Studies) -> None:
    dw = client(live_server, "neurologist")
    studies = [pydicom.Dataset.from_json(s) for s in dw.search_for_studies()]
    assert studies
    series = [pydicom.Dataset.from_json(s) for s in dw.search_for_series(str(studies[0].StudyInstanceUID))]
    assert {str(s.Modality) for s in series} == {"MR"}  # the images, not the unsigned AI results


def test_a_technician_cannot_query_but_stores_a_study_by_stow(live_server: LiveServer, analysed_study: Studies) -> None:
    with pytest.raises(requests.HTTPError) as refused:
        client(live_server, "technician").search_for_studies()
    assert refused.value.response.status_code == 403
    reader = client(live_server, "radiologist")
    uid = str(pydicom.Dataset.from_json(reader.search_for_studies()[0]).StudyInstanceUID)
    mr = [
        pydicom.Dataset.from_json(s)
        for s in reader.search_for_series(uid)
        if pydicom.Dataset.from_json(s).Modality == "MR"
    ]
    instances = [ds for s in mr for ds in reader.retrieve_series(uid, str(s.SeriesInstanceUID))]
    answer = client(live_server, "technician").store_instances(instances)  # the store response
    assert len(answer.ReferencedSOPSequence) == len(instances)
    assert {str(i.ReferencedSOPInstanceUID) for i in answer.ReferencedSOPSequence} == {
        str(ds.SOPInstanceUID) for ds in instances
    }
    after = [pydicom.Dataset.from_json(s) for s in reader.search_for_studies()]
    assert len(after) == 2  # the same images again are the same study (received idempotently)


def test_rendered_frames_with_accept_negotiation(live_server: LiveServer, analysed_study: Studies) -> None:
    """WADO-RS rendered: a frame as JPEG (the default) or PNG (Accept), the instance's own window applied;
    an Accept without either: 406."""
    import io

    import numpy as np
    from PIL import Image

    dw = client(live_server, "radiologist")
    study = pydicom.Dataset.from_json(dw.search_for_studies()[0])
    uid = str(study.StudyInstanceUID)
    mr = next(pydicom.Dataset.from_json(s) for s in dw.search_for_series(uid) if s["00080060"]["Value"] == ["MR"])
    inst = pydicom.Dataset.from_json(dw.search_for_instances(uid, str(mr.SeriesInstanceUID))[0])
    ids = (uid, str(mr.SeriesInstanceUID), str(inst.SOPInstanceUID))
    source = dw.retrieve_instance(*ids)
    png = dw.retrieve_instance_frames_rendered(*ids, frame_numbers=[1], media_types=("image/png",))
    shown = np.asarray(Image.open(io.BytesIO(png)))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and shown.shape == source.pixel_array.shape
    # the window of the instance, as a viewer applies it (computed here from the pixels fetched above)
    values = source.pixel_array * float(source.get("RescaleSlope", 1)) + float(source.get("RescaleIntercept", 0))
    if "WindowCenter" in source:
        c = float(np.ravel([source.WindowCenter])[0])
        w = float(np.ravel([source.WindowWidth])[0])
        lo, hi = c - w / 2, c + w / 2
    else:
        lo, hi = float(values.min()), float(values.max())
    expected = np.rint(np.clip((values - lo) / (hi - lo), 0, 1) * 255)
    assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 1
    jpeg = dw.retrieve_instance_rendered(*ids)  # no media type asked: JPEG
    assert jpeg[:3] == b"\xff\xd8\xff"
    assert np.asarray(Image.open(io.BytesIO(jpeg))).shape == source.pixel_array.shape
    headers = {"Authorization": f"Bearer {live_server.token('radiologist')}"}
    base = f"{live_server.url}/dicomweb/studies/{ids[0]}/series/{ids[1]}/instances/{ids[2]}"
    r = requests.get(f"{base}/rendered", headers={**headers, "Accept": "image/gif"}, timeout=60)
    assert r.status_code == 406
    r = requests.get(f"{base}/frames/2/rendered", headers={**headers, "Accept": "image/png"}, timeout=60)
    assert r.status_code == 404 and "has 1 frame" in r.json()["detail"]
    r = requests.get(f"{base}/rendered", headers={**headers, "Accept": "image/jpeg;q=0.5, image/png"}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    tech = {"Authorization": f"Bearer {live_server.token('technician')}"}
    assert requests.get(f"{base}/rendered", headers=tech, timeout=60).status_code == 403
