"""DICOM Encapsulated PDF: the report's PDF joins the patient's study, byte for byte, readable by dcmtk."""

from __future__ import annotations

import copy
import io
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import EncapsulatedPDFStorage

from neuronav.errors import ReportError
from neuronav.report.codes import REPORT_CODE
from neuronav.report.dicom_pdf import make_encapsulated_pdf
from neuronav.report.lifecycle import sign
from neuronav.report.model import Report
from neuronav.report.sources import SourceSeries
from tests.conftest import require_binary
from tests.report.conftest import Analysed

PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)


def tiny_pdf(text: str = "NeuroNav test report") -> bytes:
    """A real one-page PDF made by reportlab directly."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=A4)
    canvas.drawString(72, 720, text)
    canvas.showPage()
    canvas.save()
    return buf.getvalue()


def odd_and_even_pdfs() -> list[bytes]:
    pdf = tiny_pdf()
    other = pdf + b"\n"  # bytes after %%EOF are allowed; gives the other length parity
    return [pdf, other] if len(pdf) % 2 else [other, pdf]


def round_trip(ds: Dataset) -> pydicom.FileDataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("parity", ["odd", "even"])
def test_the_pdf_is_encapsulated_byte_for_byte_in_the_source_study(
    analysed: Analysed, report: Report, parity: str
) -> None:
    pdf = odd_and_even_pdfs()[0 if parity == "odd" else 1]
    assert len(pdf) % 2 == (1 if parity == "odd" else 0)
    ds = round_trip(make_encapsulated_pdf(report, pdf, analysed.source))

    assert ds.SOPClassUID == EncapsulatedPDFStorage == ds.file_meta.MediaStorageSOPClassUID
    assert ds.Modality == "DOC" and ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    doc = bytes(ds.EncapsulatedDocument)
    assert doc.startswith(b"%PDF-") and len(doc) % 2 == 0
    assert ds.EncapsulatedDocumentLength == len(pdf)
    assert doc[: ds.EncapsulatedDocumentLength] == pdf
    assert doc[len(pdf) :] == (b"\0" if parity == "odd" else b"")

    source = analysed.source.first
    for keyword in PATIENT_STUDY:
        assert ds[keyword].value == source[keyword].value, keyword
    assert ds.SeriesInstanceUID not in {source.SeriesInstanceUID, analysed.source.series_instance_uid}
    assert ds.SOPInstanceUID not in {d.SOPInstanceUID for d in analysed.source.datasets}
    assert ds.InstanceNumber == 1 and ds.SeriesNumber > 0

    assert report.report_id in ds.DocumentTitle and "PRELIMINARY v1" in ds.DocumentTitle
    assert "not for clinical use" in ds.DocumentTitle and "PRELIMINARY v1" in ds.SeriesDescription
    concept = ds.ConceptNameCodeSequence[0]
    assert (concept.CodeValue, concept.CodingSchemeDesignator) == (REPORT_CODE.value, REPORT_CODE.scheme)
    assert ds.BurnedInAnnotation == "YES" and ds.Manufacturer == "NeuroNav"
    assert ds.VerificationFlag == "UNVERIFIED" and ds.ConversionType == "WSD"
    assert ds.ContentDate == report.created.astimezone().strftime("%Y%m%d") and ds.ContentTime
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert [i.ReferencedSOPInstanceUID for i in ds.SourceInstanceSequence] == [
        d.SOPInstanceUID for d in analysed.source.datasets
    ]


@pytest.mark.dcmtk
def test_dcmtk_reads_the_file_and_extracts_the_same_pdf(analysed: Analysed, report: Report, tmp_path: Path) -> None:
    pdf = odd_and_even_pdfs()[0]  # the padded case
    path = tmp_path / "report-pdf.dcm"
    make_encapsulated_pdf(report, pdf, analysed.source).save_as(path, enforce_file_format=True)
    dump = subprocess.run([require_binary("dcmdump"), str(path)], capture_output=True, text=True, check=False)
    assert dump.returncode == 0, dump.stderr
    assert "EncapsulatedPDFStorage" in dump.stdout and "application/pdf" in dump.stdout
    out = tmp_path / "extracted.pdf"
    proc = subprocess.run([require_binary("dcm2pdf"), str(path), str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().rstrip(b"\0") == pdf.rstrip(b"\0")


def test_a_signed_report_says_final_and_verified(analysed: Analysed, report: Report) -> None:
    signed = sign(report, who="Dr Test", role="radiologist")
    ds = round_trip(make_encapsulated_pdf(signed, tiny_pdf(), analysed.source))
    assert f"{signed.status.upper()} v{signed.version}" in ds.DocumentTitle
    assert "FINAL" in ds.DocumentTitle and "FINAL" in ds.SeriesDescription
    assert ds.VerificationFlag == "VERIFIED"


def test_a_non_ascii_patient_name_of_another_character_set_is_kept(analysed: Analysed, report: Report) -> None:
    first = copy.deepcopy(analysed.source.first)
    first.SpecificCharacterSet = "ISO_IR 100"
    first.PatientName = "Müller^Jörg"
    del first.AccessionNumber  # type 2 in the source study: written empty
    source = SourceSeries([first], analysed.source.affine, analysed.source.series_instance_uid)
    ds = round_trip(make_encapsulated_pdf(report, tiny_pdf(), source))
    assert str(ds.PatientName) == "Müller^Jörg"
    assert "AccessionNumber" in ds and ds.AccessionNumber == ""


def test_bytes_that_are_not_a_pdf_are_refused(analysed: Analysed, report: Report) -> None:
    with pytest.raises(ReportError, match="PDF"):
        make_encapsulated_pdf(report, b"<html>not a pdf</html>", analysed.source)
