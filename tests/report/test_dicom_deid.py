"""De-identification of the derived objects (SEG, SR, Encapsulated PDF, Secondary Capture) with their source.

The phantom study and the objects written from its analysis go through ``Deidentifier.files`` (what
``neuronav deid`` runs) in one run. Checked, with independent tools where there are some:

* dciodvfy reports no error on any de-identified derived object (their IODs' required modules are
  kept), and PixelMed's DicomSRValidator none on the de-identified SR;
* no PHI remains: the phantom patient's name, ID, birth date, accession number and the real study
  date are in no byte of any output file; dates are shifted by the profile's per-patient offset;
* every reference resolves within the de-identified set: the SEG's referenced series and source
  images, the SR's evidence and content references (images, SEG segments), the PDF's source
  instances and the SC's source images and related series are UIDs of de-identified files;
* the PDF's document is replaced and the SC's burnt-in text box is blanked (BurnedInAnnotation NO).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from neuronav.deid import Deidentifier
from neuronav.report.dicom_sc import annotation_box
from neuronav.report.outputs import Written
from tests.dicom_validate import assert_valid, dciodvfy, pixelmed_sr
from tests.report.conftest import Analysed

pytestmark = [pytest.mark.slow, pytest.mark.dicom_validators]
KEY = b"test-deid-derived-objects-key-0123456789"


@dataclass
class Deidentified:
    by_modality: dict[str, list[Path]]
    datasets: dict[str, Dataset]  # new SOPInstanceUID → data set
    files: list[Path]
    original: Dataset  # one source image, before de-identification
    shift_days: int


@pytest.fixture(scope="module")
def deid(analysed: Analysed, written_dicom: Written, tmp_path_factory: pytest.TempPathFactory) -> Deidentified:
    out = tmp_path_factory.mktemp("deid")
    derived = [p for fmt in ("seg", "sr", "epdf", "sc") for p in written_dicom.files[fmt]]
    deidentifier = Deidentifier(KEY)
    result = deidentifier.files([analysed.dicom_dir, *derived], out)
    assert not result.refused and not result.skipped, result.summary()
    assert result.written == result.files_seen
    by_modality: dict[str, list[Path]] = {}
    datasets: dict[str, Dataset] = {}
    for path in result.outputs:
        ds = pydicom.dcmread(path)
        datasets[str(ds.SOPInstanceUID)] = ds
        kind = "PDF" if ds.SOPClassUID == pydicom.uid.EncapsulatedPDFStorage else str(ds.Modality)
        if kind == "OT" or ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage:
            kind = "SC"
        by_modality.setdefault(kind, []).append(path)
    original = analysed.source.first
    return Deidentified(
        by_modality, datasets, result.outputs, original, deidentifier.date_shift(str(original.PatientID))
    )


def _one(d: Deidentified, kind: str) -> Dataset:
    (path,) = d.by_modality[kind]
    return pydicom.dcmread(path)


def test_derived_objects_have_no_dciodvfy_error_after_deid(deid: Deidentified) -> None:
    paths = [*deid.by_modality["SEG"], *deid.by_modality["SR"], *deid.by_modality["PDF"], *deid.by_modality["SC"][:8]]
    assert_valid(dciodvfy(p) for p in paths)


def test_deidentified_sr_passes_pixelmed(deid: Deidentified) -> None:
    (path,) = deid.by_modality["SR"]
    verdict = pixelmed_sr(path)
    assert "Found Root Template TID_1500" in verdict.output
    assert_valid([verdict])


def test_no_phi_remains_in_any_file(deid: Deidentified) -> None:
    o = deid.original
    phi = {
        "PatientName": str(o.PatientName),
        "PatientID": str(o.PatientID),
        "PatientBirthDate": str(o.PatientBirthDate),
        "AccessionNumber": str(o.AccessionNumber),
        "StudyDate": str(o.StudyDate),
    }
    assert all(len(v) >= 6 for v in phi.values()), phi  # the phantom has them all: the check can fail
    for path in deid.files:
        data = path.read_bytes()
        for name, value in phi.items():
            assert value.encode() not in data, f"{name} left in {path.name}"
    shifted = (dt.datetime.strptime(phi["StudyDate"], "%Y%m%d") + dt.timedelta(days=deid.shift_days)).strftime("%Y%m%d")
    for kind in ("SEG", "SR", "PDF", "SC"):
        ds = pydicom.dcmread(deid.by_modality[kind][0])
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.StudyDate == shifted, kind
        assert not ds.get("PatientBirthDate"), kind
        assert str(ds.PatientID).startswith("NNP-"), kind


def _sr_references(items: Iterator[Dataset] | list[Dataset]) -> Iterator[tuple[str, Dataset]]:
    for item in items:
        for ref in item.get("ReferencedSOPSequence", []):
            yield str(ref.ReferencedSOPInstanceUID), ref
        yield from _sr_references(item.get("ContentSequence", []))


def test_references_resolve_within_the_deidentified_set(deid: Deidentified) -> None:
    uids = deid.datasets
    series = {str(ds.SeriesInstanceUID) for ds in uids.values()}
    seg, sr, pdf = _one(deid, "SEG"), _one(deid, "SR"), _one(deid, "PDF")
    study = str(seg.StudyInstanceUID)
    assert {str(ds.StudyInstanceUID) for ds in uids.values()} == {study}  # one study, consistently remapped
    # SEG: the referenced series and every source image of its frames
    assert all(str(item.SeriesInstanceUID) in series for item in seg.ReferencedSeriesSequence)
    sources = [
        str(src.ReferencedSOPInstanceUID)
        for frame in seg.PerFrameFunctionalGroupsSequence
        for derivation in frame.DerivationImageSequence
        for src in derivation.SourceImageSequence
    ]
    assert sources and all(uid in uids for uid in sources)
    assert seg.SegmentSequence and seg.SegmentationType == "BINARY"
    # SR: the evidence and every content reference (images of the regions, the SEG's segments)
    evidence = [
        str(i.ReferencedSOPInstanceUID)
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for ser in s.ReferencedSeriesSequence
        for i in ser.ReferencedSOPSequence
    ]
    assert str(seg.SOPInstanceUID) in evidence and all(uid in uids for uid in evidence)
    content = list(_sr_references(sr.ContentSequence))
    assert content and all(uid in uids for uid, _ in content)
    segment_refs = [ref for uid, ref in content if uid == str(seg.SOPInstanceUID)]
    assert {int(r.ReferencedSegmentNumber) for r in segment_refs} == {int(s.SegmentNumber) for s in seg.SegmentSequence}
    # PDF and SC: their source images and series
    assert all(str(i.ReferencedSOPInstanceUID) in uids for i in pdf.SourceInstanceSequence)
    for path in deid.by_modality["SC"][:8]:
        sc = pydicom.dcmread(path)
        assert str(sc.SourceImageSequence[0].ReferencedSOPInstanceUID) in uids
        assert str(sc.RelatedSeriesSequence[0].SeriesInstanceUID) in series
        assert str(sc.FrameOfReferenceUID) == str(
            uids[str(sc.SourceImageSequence[0].ReferencedSOPInstanceUID)].FrameOfReferenceUID
        )


def test_pdf_document_is_replaced_and_sc_text_box_is_blanked(deid: Deidentified, written_dicom: Written) -> None:
    pdf = _one(deid, "PDF")
    original_pdf = pydicom.dcmread(written_dicom.files["epdf"][0]).EncapsulatedDocument
    assert pdf.EncapsulatedDocument.startswith(b"%PDF") and pdf.EncapsulatedDocument != original_pdf
    assert pdf.BurnedInAnnotation == "NO" and int(pdf.EncapsulatedDocumentLength) == len(pdf.EncapsulatedDocument)
    assert not pdf.DocumentTitle  # it named the report id, which holds a date
    sc = pydicom.dcmread(deid.by_modality["SC"][0])
    before = pydicom.dcmread(written_dicom.files["sc"][int(sc.InstanceNumber) - 1])
    r, c = annotation_box(int(sc.Rows), int(sc.Columns))
    box = before.pixel_array[:r, :c].astype(int)
    text = (box[..., 0] == 0) & (box[..., 1] > 64) & (box[..., 1] == box[..., 2])  # cyan, anti-aliased
    assert text.sum() > 100  # the text was there, inside the box
    assert sc.BurnedInAnnotation == "NO"
    assert not sc.pixel_array[:r, :c].any()  # blanked
    assert np.array_equal(sc.pixel_array[r:], before.pixel_array[r:])  # the rest of the image is untouched
