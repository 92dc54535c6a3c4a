"""Query / retrieve against a real PACS (Orthanc from Debian) and the priors the service uses.

* C-FIND (Study Root) finds what Orthanc holds, by the exact patient id; wildcards are refused;
* C-MOVE brings a study from Orthanc to the listener, and it is received through the upload's path;
* a new study arrives over DICOM while Orthanc holds an earlier study of the same patient: the service's
  analysis finds it at Orthanc, moves it, analyses it, and the new report carries the change versus that
  prior and the RANO category — the numbers of the prior's own analysis, as the CLI's ``--prior`` gives;
* a study at the PACS with the same patient id from another issuer is not taken as a prior.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from neuronav.db.models import AnalysisRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.errors import InputError
from neuronav.findings import Findings
from neuronav.integrations.dimse import qr
from neuronav.integrations.dimse.errors import DicomNetworkError
from neuronav.integrations.dimse.scu import Peer
from neuronav.workflow import jobs, reports
from neuronav.workflow.pacs import fetch_study, held_study, pacs_node
from neuronav.workflow.priors import pacs_candidates
from neuronav.workflow.viewer import priors_of
from tests.integrations.dimse.conftest import DicomEnv, phantom_files, storescu, wait_for
from tests.peers import Orthanc

pytestmark = [pytest.mark.pacs, pytest.mark.slow]

PRIOR_DATE = "20180115"


def _first(folder: Path) -> pydicom.Dataset:
    return pydicom.dcmread(phantom_files(folder)[0], stop_before_pixels=True)


@pytest.fixture(scope="session")
def prior_dicom(tmp_path_factory: pytest.TempPathFactory, phantom_dicom: Path) -> Path:
    """Another phantom study (seed 517) made the prior of ``phantom_dicom``'s patient: the same patient
    identity, its own study and series UIDs, examined on PRIOR_DATE."""
    from neuronav.phantom import generate_study

    root = tmp_path_factory.mktemp("phantom-prior")
    generate_study(root / "gen", seed=517, fmt="dicom", profile="clinical")
    patient = _first(phantom_dicom)
    out = root / "prior"
    for f in phantom_files(root / "gen" / "dicom"):
        ds = pydicom.dcmread(f)
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = (
            patient.PatientID,
            patient.PatientName,
            patient.PatientBirthDate,
        )
        ds.IssuerOfPatientID = patient.get("IssuerOfPatientID", "")
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = PRIOR_DATE
        target = out / f.relative_to(root / "gen" / "dicom")
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
    return out


def _pacs_env(make_dicom_env: Callable[..., DicomEnv], orthanc: Orthanc) -> DicomEnv:
    """A listener whose PACS is the shared Orthanc (registered --incoming: it sends what is moved)."""
    env = make_dicom_env(NEURONAV_PACS_NODE="pacs")
    env.add_node("pacs", orthanc.aet, port=orthanc.dicom_port)
    env.add_node("scanner", "STORESCU")
    orthanc.clear()
    orthanc.set_modality("neuronav", env.settings.dicom_ae_title, "127.0.0.1", env.port)
    return env


def test_c_find_and_c_move_against_orthanc(
    make_dicom_env: Callable[..., DicomEnv], orthanc: Orthanc, prior_dicom: Path
) -> None:
    env = _pacs_env(make_dicom_env, orthanc)
    files = phantom_files(prior_dicom)
    orthanc.upload(files)
    first = _first(prior_dicom)
    peer = Peer(orthanc.aet, "127.0.0.1", orthanc.dicom_port)
    found = qr.find_studies(peer, qr.StudyQuery(patient_id=str(first.PatientID), modality="MR"), calling_ae="NEURONAV")
    (study,) = found.studies
    assert study.study_instance_uid == first.StudyInstanceUID and study.study_date == PRIOR_DATE
    assert study.patient_id == first.PatientID and "MR" in study.modalities and study.instances == len(files)
    # a date range that excludes it, and another patient's id: no answer
    q = qr.StudyQuery(patient_id=str(first.PatientID), study_date="20190101-")
    assert qr.find_studies(peer, q, calling_ae="NEURONAV").studies == []
    assert qr.find_studies(peer, qr.StudyQuery(patient_id="NOBODY-1"), calling_ae="NEURONAV").studies == []
    with pytest.raises(InputError, match="wildcards are not allowed"):
        qr.StudyQuery(patient_id="PHANTOM*")
    # C-MOVE to an AE title Orthanc does not know: the reason is named
    with pytest.raises(DicomNetworkError, match="does not know the move destination 'UNKNOWNAE'"):
        qr.move_study(peer, str(first.StudyInstanceUID), destination_ae="UNKNOWNAE", calling_ae="NEURONAV")
    # C-MOVE to the listener: received through the upload's path (one study, its analysis queued)
    with session_scope(env.settings.database) as db:
        pacs = pacs_node(db, env.settings)
    fetched = fetch_study(env.settings, env.store, pacs, str(first.StudyInstanceUID))
    assert fetched.state == "received" and fetched.instances == len(files) == env.instance_count()
    with session_scope(env.settings.database) as db:
        row = held_study(db, env.settings, str(first.StudyInstanceUID))
        assert row is not None and row.id == fetched.study_id and row.n_files == len(files)
        assert db.scalars(select(AnalysisRow.id).where(AnalysisRow.study_id == row.id)).all() == env.dispatched


def test_the_service_fetches_the_prior_from_orthanc_and_reports_the_change(
    make_dicom_env: Callable[..., DicomEnv],
    orthanc: Orthanc,
    phantom_dicom: Path,
    prior_dicom: Path,
    tmp_path: Path,
) -> None:
    env = _pacs_env(make_dicom_env, orthanc)
    orthanc.upload(phantom_files(prior_dicom))  # the PACS holds the patient's earlier study
    prior_uid = str(_first(prior_dicom).StudyInstanceUID)
    # the new study arrives from the scanner
    sent = storescu(env.port, phantom_dicom)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: bool(env.arrivals()) and env.arrivals()[0].state != "receiving", 180, "the study to complete")
    (arrival,) = env.arrivals()
    assert arrival.state == "received"
    (analysis_id,) = env.dispatched
    assert jobs.run_analysis(analysis_id, env.settings) == "done"  # the job the worker runs

    with session_scope(env.settings.database) as db:
        current = db.get(StudyRow, arrival.study_id)
        prior = held_study(db, env.settings, prior_uid)
        assert current is not None and prior is not None, "the prior was not retrieved from the PACS"
        a = db.get(AnalysisRow, analysis_id)
        assert a is not None and a.result["prior"]["source"] == "pacs"
        assert a.result["prior"]["study_id"] == prior.id == current.prior_study_id
        assert prior.patient_pseudonym == current.patient_pseudonym and prior.study_date == PRIOR_DATE
        prior_done = db.scalars(
            select(AnalysisRow).where(AnalysisRow.study_id == prior.id, AnalysisRow.state == "done")
        ).one()  # analysed once, inline
        assert a.result["prior"]["analysis_id"] == prior_done.id
        prior_findings = Findings.model_validate_json(
            jobs.result_path(env.settings, db, prior_done, "findings.json", tmp_path).read_text()
        )
        report = reports.load(db, env.store, a.result["report_id"])
        # the viewer compares with the same prior
        assert [p.id for p in priors_of(db, current, env.settings)][:1] == [prior.id]

    change = report.change_versus_prior
    assert change is not None, "the service's report carries no change versus prior"
    assert change.prior_date == PRIOR_DATE and change.prior_study == prior_uid
    assert change.rano_category in ("progression", "stable", "partial_response", "complete_response")
    # the prior's own analysis gave the "before" numbers; the change is computed from both (recomputed here)
    now = report.findings.segmentation.volumes.model_dump()
    was = prior_findings.segmentation.volumes.model_dump()
    assert report.findings.change is not None
    for key, pct in report.findings.change.volume_change_percent.items():
        if was[key] > 0:
            assert pct == pytest.approx(100.0 * (now[key] - was[key]) / was[key], abs=0.051), key
    et_now, et_was = now["enhancing_ml"], was["enhancing_ml"]
    if et_was > 0 and et_now >= 1.4 * et_was:
        assert change.rano_category == "progression"
    elif et_was > 0 and 0.05 <= et_now <= 0.35 * et_was:
        assert change.rano_category == "partial_response"
    elif et_was > 0 and 0.35 * et_was < et_now < 1.4 * et_was:
        assert change.rano_category == "stable"


def test_a_study_of_the_same_id_from_another_issuer_is_not_a_prior(
    make_dicom_env: Callable[..., DicomEnv], orthanc: Orthanc, phantom_dicom: Path, prior_dicom: Path, tmp_path: Path
) -> None:
    env = _pacs_env(make_dicom_env, orthanc)
    sent = storescu(env.port, phantom_dicom)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: bool(env.arrivals()) and env.arrivals()[0].state != "receiving", 180, "the study to complete")
    study_id = env.arrivals()[0].study_id
    assert study_id is not None
    # at the PACS: the same patient id, issued by another hospital; and one of the right issuer
    uploads = []
    for issuer, name in (("OTHER-HOSPITAL", "other"), (_first(phantom_dicom).get("IssuerOfPatientID", ""), "same")):
        ds = pydicom.dcmread(phantom_files(prior_dicom)[0])
        ds.IssuerOfPatientID = issuer
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = tmp_path / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        uploads.append((name, str(ds.StudyInstanceUID), path))
    orthanc.upload([p for _, _, p in uploads])
    found = {s.study_instance_uid for s in pacs_candidates(env.settings, env.store, study_id)}
    assert found == {uid for name, uid, _ in uploads if name == "same"}
