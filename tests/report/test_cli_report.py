"""`neuronav report` and `neuronav analyze --formats`: every format from one command, clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from neuronav.report.lifecycle import sign
from neuronav.report.model import Report
from tests.report.conftest import Analysed


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neuronav.cli", *map(str, args)], capture_output=True, text=True, check=False
    )


@pytest.mark.slow
def test_every_format_from_one_command_tells_the_same_numbers(analysed: Analysed, tmp_path: Path) -> None:
    proc = run("report", analysed.analysis_dir, "--format", "all", "--dicom", analysed.dicom_dir, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    expected = {"report.json", "report.pdf", "seg.dcm", "sr.dcm", "report-pdf.dcm", "fhir-r4.json", "fhir-r4b.json"}
    expected |= {"fhir-r5.json"}
    assert expected <= names and "report.hl7" in names
    assert any(n.startswith("sc/") for n in names)
    assert not [n for n in names if n.endswith(".partial")]
    report = Report.model_validate_json((tmp_path / "report.json").read_text())
    wt = {m.key: m.value for m in report.measurements}["whole_tumour_volume"]
    assert wt == analysed.findings.segmentation.volumes.whole_tumour_ml
    bundle = json.loads((tmp_path / "fhir-r4b.json").read_text())
    values = [
        e["resource"]["valueQuantity"]["value"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and "valueQuantity" in e["resource"]
    ]
    assert wt in values
    assert f"|{wt}|" in (tmp_path / "report.hl7").read_text() or f"|{wt:g}|" in (tmp_path / "report.hl7").read_text()
    epdf = pydicom.dcmread(tmp_path / "report-pdf.dcm")
    assert bytes(epdf.EncapsulatedDocument).rstrip(b"\0") == (tmp_path / "report.pdf").read_bytes()
    source = analysed.source.first
    for name in ("seg.dcm", "sr.dcm", "report-pdf.dcm"):
        ds = pydicom.dcmread(tmp_path / name)
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
    assert report.report_id in proc.stdout


def test_clinical_by_default_pseudonymous_on_request(analysed: Analysed, tmp_path: Path) -> None:
    source = analysed.source.first
    clinical, research = tmp_path / "clinical", tmp_path / "research"
    proc = run(
        "report", analysed.analysis_dir, "--format", "hl7,fhir-r4", "--dicom", analysed.dicom_dir, "--out", clinical
    )
    assert proc.returncode == 0, proc.stderr
    assert "clinical" in proc.stdout
    import hl7 as python_hl7

    pid = python_hl7.parse((clinical / "report.hl7").read_bytes().decode()).segment("PID")
    assert str(pid[3][0][0]) == source.PatientID and str(pid[3][0][3]) == source.get("IssuerOfPatientID", "")
    assert str(pid[5][0][0]) == str(source.PatientName).split("^")[0]
    obr = python_hl7.parse((clinical / "report.hl7").read_bytes().decode()).segment("OBR")
    assert str(obr[18]) == source.AccessionNumber
    bundle = json.loads((clinical / "fhir-r4.json").read_text())
    (patient,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient["identifier"][0]["value"] == source.PatientID
    assert [e for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    proc = run(
        "report", analysed.analysis_dir, "--format", "hl7,fhir-r4", "--dicom", analysed.dicom_dir, "--out", research,
        "--pseudonymous",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pseudonymous" in proc.stdout
    text = (research / "report.hl7").read_text() + (research / "fhir-r4.json").read_text()
    assert source.PatientID not in text and str(source.PatientName).split("^")[0] not in text
    assert source.AccessionNumber not in text


def test_a_signed_report_is_re_exported_as_signed(analysed: Analysed, report: Report, tmp_path: Path) -> None:
    signed = sign(report, who="Dr Test", role="radiologist")
    path = tmp_path / "signed.json"
    path.write_text(signed.model_dump_json())
    proc = run("report", path, "--format", "json,hl7", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    again = Report.model_validate_json((tmp_path / "out" / "report.json").read_text())
    assert again == signed
    assert "final" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "unknown format xml"),
        (["--format", "seg"], "give the source DICOM study with --dicom"),
        (["--format", "pdf", "--paper", "A3"], "unknown paper size"),
    ],
)
def test_bad_requests_get_one_clear_line(analysed: Analysed, tmp_path: Path, args: list[str], message: str) -> None:
    proc = run("report", analysed.analysis_dir, "--out", tmp_path, *args)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_dicom_of_another_study_is_refused(analysed: Analysed, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(analysed.dicom_dir / sorted(p.name for p in analysed.dicom_dir.iterdir())[0], other)
    for f in other.iterdir():
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.save_as(f)
    proc = run("report", analysed.analysis_dir, "--format", "sr", "--dicom", other, "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "is not among the DICOM files given" in proc.stderr


def test_not_a_findings_file(tmp_path: Path) -> None:
    bad = tmp_path / "findings.json"
    bad.write_text('{"hello": 1}')
    proc = run("report", bad)
    assert proc.returncode == 2 and "not a NeuroNav findings or report file" in proc.stderr


def test_nothing_segmented_skips_the_seg_and_writes_the_rest(
    analysed: Analysed, report: Report, tmp_path: Path
) -> None:
    from neuronav.report.lifecycle import edit
    from neuronav.report.outputs import write_outputs

    empty = edit(report, {"/findings/segmentation/volumes/whole_tumour_ml": 0.0}, who="Dr A", role="radiologist")
    written = write_outputs(
        empty, ["json", "seg", "sr", "hl7"], tmp_path, analysis_dir=analysed.analysis_dir, source=analysed.source
    )
    assert "seg" not in written.files and "nothing was segmented" in written.notes["seg"]
    assert {"json", "sr", "hl7"} <= set(written.files)
    assert not (tmp_path / "seg.dcm").exists()


def test_a_report_changed_after_signing_is_not_exported(report: Report, tmp_path: Path) -> None:
    signed = sign(report, who="Dr Test", role="radiologist")
    data = json.loads(signed.model_dump_json())
    data["narrative"]["impression"] = "quietly changed"
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    proc = run("report", path, "--format", "pdf", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "changed after it was signed" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_another_report_in_the_folder_is_not_replaced_silently(report: Report, tmp_path: Path) -> None:
    signed = sign(report, who="Dr Test", role="radiologist")
    (tmp_path / "report.json").write_text(signed.model_dump_json())
    other = report.model_copy(update={"report_id": "NN-20260101-00000000"})
    src = tmp_path / "src"
    src.mkdir()
    (src / "other.json").write_text(other.model_dump_json())
    proc = run("report", src / "other.json", "--format", "json", "--out", tmp_path)
    assert proc.returncode == 2 and "already holds report" in proc.stderr and "--overwrite" in proc.stderr
    assert Report.model_validate_json((tmp_path / "report.json").read_text()) == signed
    proc = run("report", src / "other.json", "--format", "json", "--out", tmp_path, "--overwrite")
    assert proc.returncode == 0, proc.stderr


def test_dicom_formats_of_a_nifti_analysis_are_refused_before_analysing(tmp_path: Path) -> None:
    from neuronav.phantom import generate_study

    generate_study(tmp_path / "s", seed=9, lesion="none", fmt="nifti", profile="clinical")
    proc = run(
        "analyze", "--t1c", tmp_path / "s" / "nifti" / "T1c.nii.gz", "--out", tmp_path / "out", "--formats", "seg,pdf"
    )
    assert proc.returncode != 0 and "need DICOM input" in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before any work
