"""De-identification (PS3.15 Basic Profile, Retain Longitudinal Modified Dates, Retain Patient Characteristics).

The phantom study (576 files, generated once for this module) checks the whole path: no PHI left in
the bytes, UIDs remapped consistently, still ingestible with identical volumes, fast. Small
hand-built data sets check every rule the phantom does not exercise (physicians, private tags,
overlays, references, burned-in annotation, structured content, other transfer syntaxes).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
)

from neuronav.deid import TABLE, Action, DeidentificationError, Deidentifier, encode, shift_date, shift_datetime
from neuronav.deid.profile import SAFE_KEYWORDS, UID_KEEP, method_values
from neuronav.errors import ConfigError, InputError, NeuroNavError
from neuronav.ingest import Series, scan
from neuronav.phantom import PhantomStudy, generate_study
from neuronav.pseudonym import pseudonymise
from neuronav.volume.core import Volume
from neuronav.volume.dicom import volume_from_series
from neuronav.volume.dicom_write import new_uid, write_dicom_series

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
UID_RE = re.compile(r"^2\.25\.[1-9]\d*$")
METHOD_CODE_VALUES = {"113100", "113107", "113108"}


# --------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("deid") / "s", seed=3, lesion="none", fmt="dicom", profile="clinical")


@pytest.fixture(scope="module")
def phantom_phi(phantom: PhantomStudy) -> dict[str, str]:
    """The identifying values the phantom generator writes (read back from one of its files).

    Its 5-digit DeviceSerialNumber and StudyID are too short to look for in raw bytes (they occur by
    chance in pixel data and UIDs): they are checked attribute by attribute instead.
    """
    ds = pydicom.dcmread(next((phantom.out_dir / "dicom").rglob("*.dcm")), stop_before_pixels=True)
    phi = {
        kw: str(ds.get(kw))
        for kw in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "AccessionNumber",
            "InstitutionName",
            "StudyDescription",
            "StudyInstanceUID",
            "FrameOfReferenceUID",
            "StudyDate",
        )
    }
    assert all(phi.values()), "the phantom is expected to write each of these"
    return phi


@pytest.fixture(scope="module")
def deidentified(phantom: PhantomStudy, tmp_path_factory: pytest.TempPathFactory) -> tuple[Deidentifier, Any, Path]:
    deid = Deidentifier(KEY)
    out = tmp_path_factory.mktemp("deid-out")
    report = deid.files([phantom.out_dir / "dicom"], out)
    return deid, report, out


def _output_files(out: Path) -> list[Path]:
    return sorted(out.rglob("*.dcm"))


def _series_by_number(series: list[Series]) -> dict[int | None, Series]:
    return {s.metadata.series_number: s for s in series}


def _image(**attrs: Any) -> Dataset:
    """A small MR image data set (8×8, 16 bit) with file meta and the given attributes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = new_uid()
    ds.SeriesInstanceUID = new_uid()
    ds.FrameOfReferenceUID = new_uid()
    ds.Modality = "MR"
    ds.PatientName = "Müller^Hans"
    ds.PatientID = "MRN-778899"
    ds.StudyDate = "20200115"
    ds.StudyTime = "101500"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


RICH_PHI = {
    "PatientBirthDate": "19611224",
    "OtherPatientIDs": "OTHERID-5511",
    "PatientAddress": "12 Secret Lane, Springfield",
    "PatientTelephoneNumbers": "+41-555-0199",
    "PatientMotherBirthName": "Schmidt^Greta",
    "ReferringPhysicianName": "Referrer^Rita",
    "PerformingPhysicianName": "Performer^Paul",
    "OperatorsName": "Operator^Olga",
    "PhysiciansOfRecord": "Recorder^Rob",
    "NameOfPhysiciansReadingStudy": "Reader^Ruth",
    "RequestingPhysician": "Requester^Ray",
    "InstitutionName": "Hospital Of Secrets",
    "InstitutionAddress": "1 Hospital Road, Secretville",
    "InstitutionalDepartmentName": "Neuroradiology Secret Dept",
    "StationName": "SECRETSTATION1",
    "AccessionNumber": "ACC-99887766",
    "StudyID": "STUDY-4242",
    "DeviceSerialNumber": "SN-123456789",
    "StudyDescription": "MRI head for Hans Mueller",
    "SeriesDescription": "t1 Hans Mueller",
    "ProtocolName": "protocol Hans Mueller",
    "ImageComments": "patient Hans anxious",
    "PatientComments": "claustrophobic, Hans",
    "PerformedProcedureStepID": "PPS-31337",
    "RequestedProcedureID": "RP-8888",
}


def _rich() -> Dataset:
    """An image with identifying values in every place a clinical MR export puts them."""
    ds = _image(
        **RICH_PHI,
        PatientSex="F",
        PatientAge="058Y",
        PatientSize="1.68",
        PatientWeight="61.5",
        AcquisitionDateTime="20200115101733.250000+0100",
        AcquisitionDate="20200115",
        ContentDate="20200115",
        ContentTime="102001",
        RepetitionTime="2300",
        EchoTime="2.98",
        FlipAngle="9",
        MagneticFieldStrength="3",
        PatientSpeciesDescription="UNLISTED-SECRET-VALUE",
    )
    other = Dataset()
    other.PatientID = "OTHERSEQ-7777"
    other.IssuerOfPatientID = "Other Hospital"
    ds.OtherPatientIDsSequence = [other]
    request = Dataset()
    request.RequestedProcedureID = "RP-8888"
    request.ScheduledProcedureStepID = "SPS-1212"
    request.ScheduledProcedureStepDescription = "Hans brain"
    ds.RequestAttributesSequence = [request]
    block = ds.private_block(0x0029, "ACME PRIVATE", create=True)
    block.add_new(0x10, "LO", "Müller^Hans private copy")
    block.add_new(0x11, "LO", "MRN-778899")
    ds.add_new(0x60000010, "US", 8)  # OverlayRows
    ds.add_new(0x60000011, "US", 8)  # OverlayColumns
    ds.add_new(0x60003000, "OW", b"\xff" * 8)  # OverlayData
    ds.add_new(0x60004000, "LT", "overlay note Hans")  # OverlayComments
    return ds


def _write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _read(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def _series(tmp: Path, *, patient_id: str = "PID-1", study_date: str = "20230301", **kw: Any) -> list[Path]:
    rng = np.random.default_rng(7)
    affine = np.diag([0.9, 0.8, 2.5, 1.0])
    affine[:3, 3] = [-12.5, 20.0, 5.0]
    vol = Volume(rng.integers(0, 4000, (16, 16, 6)).astype(np.int16), affine)
    study = {
        "StudyInstanceUID": new_uid(),
        "PatientID": patient_id,
        "PatientName": "Doe^Jane",
        "StudyDate": study_date,
        "PatientSex": "F",
    }
    return write_dicom_series(vol, tmp, study=study, series={"SeriesInstanceUID": new_uid(), "SeriesNumber": 5}, **kw)


def _all_uids(ds: Dataset) -> Iterator[tuple[str, str]]:
    """(keyword, value) of every UI element, recursively."""
    for elem in ds.iterall():
        if elem.VR == "UI" and elem.value:
            values = elem.value if isinstance(elem.value, list | pydicom.multival.MultiValue) else [elem.value]
            for v in values:
                yield elem.keyword, str(v)


# ------------------------------------------------------------------------------ the phantom study
@pytest.mark.slow
def test_phantom_report(deidentified: tuple[Deidentifier, Any, Path]) -> None:
    deid, report, out = deidentified
    assert report.files_seen == report.written == 576
    assert (report.studies, report.series, report.patients) == (1, 4, 1)
    assert report.skipped == [] and report.refused == [] and report.duplicates == 0
    assert report.uid_map_size == deid.uid_map_size >= 576 + 4 + 1 + 1
    assert len(_output_files(out)) == 576
    assert not list(out.rglob("*.partial"))


@pytest.mark.slow
def test_phantom_no_phi_in_output_bytes(
    deidentified: tuple[Deidentifier, Any, Path], phantom_phi: dict[str, str]
) -> None:
    _, report, out = deidentified
    needles = {kw: v.encode("utf-8") for kw, v in phantom_phi.items()}
    for path in _output_files(out):
        data = path.read_bytes()
        for keyword, needle in needles.items():
            assert needle not in data, f"{keyword} found in {path.name}"
    text = json.dumps(report.summary())
    assert not any(v in text for v in phantom_phi.values())
    assert str(out) not in text


@pytest.mark.slow
def test_phantom_uids_remapped_consistently(
    deidentified: tuple[Deidentifier, Any, Path], phantom: PhantomStudy, phantom_phi: dict[str, str]
) -> None:
    deid, _, out = deidentified
    originals = {p: pydicom.dcmread(p, stop_before_pixels=True) for p in (phantom.out_dir / "dicom").rglob("*.dcm")}
    original_sops = {str(ds.SOPInstanceUID) for ds in originals.values()}
    original_series = {str(ds.SeriesInstanceUID) for ds in originals.values()}
    studies, series, frames, sops = set(), set(), set(), set()
    for path in _output_files(out):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert path.name == f"{ds.SOPInstanceUID}.dcm"
        assert path.parent.name == ds.SeriesInstanceUID and path.parent.parent.name == ds.StudyInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == MRImageStorage == ds.file_meta.MediaStorageSOPClassUID
        for keyword, value in _all_uids(ds):
            if keyword not in UID_KEEP:
                assert UID_RE.match(value) and len(value) <= 64, (keyword, value)
        studies.add(ds.StudyInstanceUID)
        series.add(ds.SeriesInstanceUID)
        frames.add(ds.FrameOfReferenceUID)
        sops.add(ds.SOPInstanceUID)
    assert studies == {deid.uid(phantom_phi["StudyInstanceUID"])}
    assert frames == {deid.uid(phantom_phi["FrameOfReferenceUID"])}
    assert series == {deid.uid(s) for s in original_series} and len(series) == 4
    assert sops == {deid.uid(s) for s in original_sops} and len(sops) == 576
    assert not (sops | series | studies | frames) & (original_sops | original_series)


@pytest.mark.slow
def test_phantom_ingests_with_identical_volumes(
    deidentified: tuple[Deidentifier, Any, Path], phantom: PhantomStudy
) -> None:
    _, _, out = deidentified
    before, after = scan([phantom.out_dir / "dicom"]), scan([out])
    assert after.problems == [] and after.n_instances == before.n_instances == 576
    assert len(after.studies) == 1
    old, new = _series_by_number(before.all_series), _series_by_number(after.all_series)
    assert old.keys() == new.keys() and len(new) == 4
    for number, series in old.items():
        a, b = volume_from_series(series), volume_from_series(new[number])
        assert a.shape == b.shape
        assert np.array_equal(a.data, b.data), number
        np.testing.assert_allclose(b.affine, a.affine, atol=1e-9)
        md = new[number].metadata
        assert (md.repetition_time, md.echo_time, md.flip_angle) == (
            series.metadata.repetition_time,
            series.metadata.echo_time,
            series.metadata.flip_angle,
        )
        assert md.series_description == "" and md.protocol_name == ""  # Basic Profile: descriptions removed
    patient = next(iter(after.studies.values())).patient
    assert patient.patient_birth_date == patient.institution_name == patient.accession_number == ""


@pytest.mark.slow
def test_phantom_dates_shifted_and_method_recorded(
    deidentified: tuple[Deidentifier, Any, Path], phantom: PhantomStudy, phantom_phi: dict[str, str]
) -> None:
    deid, _, out = deidentified
    source = pydicom.dcmread(next((phantom.out_dir / "dicom").rglob("*.dcm")), stop_before_pixels=True)
    ds = pydicom.dcmread(_output_files(out)[0], stop_before_pixels=True)
    shift = deid.date_shift(phantom_phi["PatientID"])
    assert -365 <= shift <= -1
    assert ds.StudyDate == shift_date(phantom_phi["StudyDate"], shift) != phantom_phi["StudyDate"]
    assert ds.StudyTime == source.StudyTime  # whole-day shift: the time of day is kept
    assert (
        ds.PatientID
        == ds.PatientName
        == pseudonymise(phantom_phi["PatientID"], KEY)
        == deid.pseudonym("PHANTOM-000003")
    )
    assert ds.PatientSex == source.PatientSex and ds.PatientAge == source.PatientAge
    assert ds.PatientBirthDate == "" and ds.AccessionNumber == "" and ds.StudyID == ""
    assert "InstitutionName" not in ds and "StudyDescription" not in ds and "SeriesDescription" not in ds
    assert ds.DeviceSerialNumber != source.DeviceSerialNumber
    assert ds.Manufacturer == source.Manufacturer and ds.MagneticFieldStrength == source.MagneticFieldStrength
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert list(ds.DeidentificationMethod) == list(method_values())
    codes = {(c.CodingSchemeDesignator, c.CodeValue) for c in ds.DeidentificationMethodCodeSequence}
    assert codes == {("DCM", v) for v in METHOD_CODE_VALUES}
    equipment = ds.ContributingEquipmentSequence[0]
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109104"


# ------------------------------------------------------------------------------- rich data sets
def test_no_phi_left_in_rich_file(tmp_path: Path) -> None:
    src = _write(_rich(), tmp_path / "in" / "rich.dcm")
    report = Deidentifier(KEY).files([tmp_path / "in"], tmp_path / "out")
    assert report.written == 1
    data = report.outputs[0].read_bytes()
    phi = [*RICH_PHI.values(), "Müller", "Hans", "MRN-778899", "OTHERSEQ-7777", "SPS-1212", "UNLISTED-SECRET-VALUE"]
    for value in phi:
        assert value.encode("utf-8") not in data, value
    original = _read(src)
    for uid in (
        original.SOPInstanceUID,
        original.StudyInstanceUID,
        original.SeriesInstanceUID,
        original.FrameOfReferenceUID,
    ):
        assert uid.encode() not in data
    out = _read(report.outputs[0])
    for keyword in ("ReferringPhysicianName", "AccessionNumber", "StudyID", "PatientBirthDate"):
        assert out[keyword].value in ("", None), keyword  # Type 2: emptied
    for keyword in (
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "PatientAddress",
        "PerformingPhysicianName",
        "OperatorsName",
        "PhysiciansOfRecord",
        "NameOfPhysiciansReadingStudy",
        "RequestingPhysician",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "StudyDescription",
        "SeriesDescription",
        "ProtocolName",
        "ImageComments",
        "PatientComments",
        "RequestAttributesSequence",
        "PerformedProcedureStepID",
        "RequestedProcedureID",
        "PatientSpeciesDescription",
    ):
        assert keyword not in out, keyword
    assert out.DeviceSerialNumber == "DEIDENTIFIED"
    warnings = " ".join(report.warnings)
    assert "PatientSpeciesDescription (1)" in warnings and "UNLISTED" not in warnings
    assert "private attributes removed" in warnings and "overlay" in warnings


def test_private_tags_overlays_and_curves_removed() -> None:
    ds = _rich()
    ds.add_new(0x50000010, "US", 4)  # a (retired) curve
    out = Deidentifier(KEY).dataset(ds)
    assert not any(elem.tag.is_private for elem in out.iterall())
    assert not [t for t in list(out.keys()) if (t.group & 0xFF00) in (0x5000, 0x6000)]


def test_patient_characteristics_retained() -> None:
    out = Deidentifier(KEY).dataset(_rich())
    assert (out.PatientSex, out.PatientAge, out.PatientSize, out.PatientWeight) == ("F", "058Y", 1.68, 61.5)
    assert (out.RepetitionTime, out.EchoTime, out.FlipAngle, out.MagneticFieldStrength) == (2300, 2.98, 9, 3)


def test_dates_shifted_times_and_timezone_kept() -> None:
    deid = Deidentifier(KEY, date_shift_days=-10)
    out = deid.dataset(_rich())
    assert out.StudyDate == out.AcquisitionDate == out.ContentDate == "20200105"
    assert out.StudyTime == "101500" and out.ContentTime == "102001"
    assert out.AcquisitionDateTime == "20200105101733.250000+0100"


def test_longitudinal_interval_between_studies_kept() -> None:
    deid = Deidentifier(KEY)
    first = deid.dataset(_image(PatientID="MRN-1", StudyDate="20200115", StudyInstanceUID=new_uid()))
    second = deid.dataset(_image(PatientID="MRN-1", StudyDate="20210301", StudyInstanceUID=new_uid()))

    def day(text: str) -> dt.date:
        return dt.datetime.strptime(text, "%Y%m%d").date()

    assert first.StudyDate != "20200115" and second.StudyDate != "20210301"
    assert day(second.StudyDate) - day(first.StudyDate) == day("20210301") - day("20200115")
    assert first.PatientID == second.PatientID
    assert first.StudyInstanceUID != second.StudyInstanceUID
    # another run with the same key shifts the same patient by the same days
    again = Deidentifier(KEY).dataset(_image(PatientID="MRN-1", StudyDate="20200115"))
    assert again.StudyDate == first.StudyDate


def test_date_shift_is_independent_of_the_pseudonym() -> None:
    """The shift comes from its own HMAC message: knowing the pseudonym does not give the shift."""
    shifts = {Deidentifier(KEY).date_shift(f"PID-{i}") for i in range(200)}
    assert len(shifts) > 100 and min(shifts) >= -365 and max(shifts) <= -1


def test_same_key_same_output_other_key_different(tmp_path: Path) -> None:
    _series(tmp_path / "in")
    a = Deidentifier(KEY).files([tmp_path / "in"], tmp_path / "a")
    b = Deidentifier(KEY).files([tmp_path / "in"], tmp_path / "b")
    c = Deidentifier(OTHER_KEY).files([tmp_path / "in"], tmp_path / "c")
    names = [{p.relative_to(r.out_dir) for p in r.outputs} for r in (a, b, c)]
    assert names[0] == names[1] and len(names[0]) == 6
    assert not {p.name for p in names[0]} & {p.name for p in names[2]}
    for pa in a.outputs:
        assert pa.read_bytes() == (tmp_path / "b" / pa.relative_to(tmp_path / "a")).read_bytes()
    ids = {_read(r.outputs[0]).PatientID for r in (a, b, c)}
    assert len(ids) == 2


def test_references_remapped_like_the_instances_they_point_to() -> None:
    deid = Deidentifier(KEY)
    target = _image()
    ref = Dataset()
    ref.ReferencedSOPClassUID = MRImageStorage
    ref.ReferencedSOPInstanceUID = target.SOPInstanceUID
    ref.ReferencedFrameNumber = 1
    inst = Dataset()
    inst.ReferencedSOPClassUID = MRImageStorage
    inst.ReferencedSOPInstanceUID = target.SOPInstanceUID
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = target.SeriesInstanceUID
    ref_series.ReferencedInstanceSequence = [inst]
    palette = Dataset()
    palette.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.39.1"
    palette.ReferencedSOPInstanceUID = "1.2.840.10008.1.5.1"  # a well-known (standard) instance
    derived = _image(
        StudyInstanceUID=target.StudyInstanceUID,
        FrameOfReferenceUID=target.FrameOfReferenceUID,
        ReferencedImageSequence=[ref],
        SourceImageSequence=[copy.deepcopy(ref)],
        ReferencedSeriesSequence=[ref_series],
        DerivationImageSequence=[Dataset()],
    )
    derived.DerivationImageSequence[0].SourceImageSequence = [palette]
    a, b = deid.dataset(target), deid.dataset(derived)
    assert b.StudyInstanceUID == a.StudyInstanceUID != target.StudyInstanceUID
    assert b.FrameOfReferenceUID == a.FrameOfReferenceUID != target.FrameOfReferenceUID
    for seq in (b.ReferencedImageSequence, b.SourceImageSequence):
        assert seq[0].ReferencedSOPInstanceUID == a.SOPInstanceUID != target.SOPInstanceUID
        assert seq[0].ReferencedSOPClassUID == MRImageStorage and seq[0].ReferencedFrameNumber == 1
    assert b.ReferencedSeriesSequence[0].SeriesInstanceUID == a.SeriesInstanceUID
    assert b.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    kept = b.DerivationImageSequence[0].SourceImageSequence[0]
    assert kept.ReferencedSOPInstanceUID == "1.2.840.10008.1.5.1"
    assert b.SOPClassUID == MRImageStorage and b.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_uid_form() -> None:
    deid = Deidentifier(KEY)
    new = deid.uid("1.2.3.4.5")
    assert UID_RE.match(new) and len(new) <= 64 and UID(new).is_valid
    assert new == deid.uid("1.2.3.4.5 ") == Deidentifier(KEY).uid("1.2.3.4.5")
    assert new != Deidentifier(OTHER_KEY).uid("1.2.3.4.5")
    value = int(new.split(".", 2)[2])
    assert (value >> 76) & 0xF == 8 and (value >> 62) & 0x3 == 2  # an RFC 9562 version 8 UUID
    assert deid.uid("1.2.840.10008.5.1.4.1.1.4") == "1.2.840.10008.5.1.4.1.1.4"
    assert deid.uid("") == ""


def test_pseudonym_is_the_keyed_hmac_not_a_hash() -> None:
    deid = Deidentifier(KEY)
    out = deid.dataset(_image(PatientID="MRN-778899"))
    assert out.PatientID == pseudonymise("MRN-778899", KEY)
    assert hashlib.sha256(b"MRN-778899").hexdigest()[:20] not in out.PatientID
    assert out.PatientName == out.PatientID


def test_burned_in_annotation_refused(tmp_path: Path) -> None:
    deid = Deidentifier(KEY)
    with pytest.raises(DeidentificationError, match="BurnedInAnnotation") as info:
        deid.dataset(_image(BurnedInAnnotation="YES"))
    assert isinstance(info.value, InputError) and isinstance(info.value, NeuroNavError)
    assert deid.dataset(_image(BurnedInAnnotation="NO")).BurnedInAnnotation == "NO"
    _write(_image(BurnedInAnnotation="YES"), tmp_path / "in" / "burned.dcm")
    _write(_image(), tmp_path / "in" / "clean.dcm")
    report = deid.files([tmp_path / "in"], tmp_path / "out")
    assert report.written == 1 and len(report.refused) == 1
    assert "burned.dcm" in report.refused[0].source and "BurnedInAnnotation" in report.refused[0].problem
    assert "burned.dcm" not in json.dumps(report.summary())


def test_structured_content_refused() -> None:
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "Hans Mueller"
    with pytest.raises(DeidentificationError, match="Structured Content"):
        Deidentifier(KEY).dataset(_image(ContentSequence=[item]))


def test_input_dataset_untouched(tmp_path: Path) -> None:
    path = _write(_rich(), tmp_path / "rich.dcm")
    ds = pydicom.dcmread(path)
    kinds = {tag: type(ds.get_item(tag)) for tag in list(ds.keys())}
    assert sum(kind is RawDataElement for kind in kinds.values()) > 40
    out = Deidentifier(KEY).dataset(ds)
    out.PatientAge = "001Y"
    out.ImageOrientationPatient[0] = 0.5
    assert {tag: type(ds.get_item(tag)) for tag in list(ds.keys())} == kinds  # nothing decoded in place
    assert encode_as_is(ds) == encode_as_is(pydicom.dcmread(path))
    built = _rich()
    snapshot = copy.deepcopy(built)
    out = Deidentifier(KEY).dataset(built)
    out.ImageOrientationPatient[0] = 0.5
    assert built == snapshot


def encode_as_is(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "syntax",
    [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless],
)
@pytest.mark.parametrize("multiframe", [False, True])
def test_transfer_syntaxes_and_enhanced_mr_keep_the_volume(tmp_path: Path, syntax: UID, multiframe: bool) -> None:
    _series(tmp_path / "in", transfer_syntax=syntax, multiframe=multiframe)
    report = Deidentifier(KEY).files([tmp_path / "in"], tmp_path / "out")
    assert report.written == (1 if multiframe else 6) and not report.skipped
    before, after = scan([tmp_path / "in"]), scan([tmp_path / "out"])
    assert after.problems == []
    a, b = volume_from_series(before.all_series[0]), volume_from_series(after.all_series[0])
    assert np.array_equal(a.data, b.data)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-9)
    out = _read(report.outputs[0])
    assert out.file_meta.TransferSyntaxUID == syntax
    assert out.PatientID == pseudonymise("PID-1", KEY) and out.PatientName == out.PatientID
    assert out.StudyDate != "20230301"
    if multiframe:
        assert out.NumberOfFrames == 6
        assert len(out.PerFrameFunctionalGroupsSequence) == 6
        assert out.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing == [0.8, 0.9]


def test_bytes_are_a_readable_part10_file_with_a_zero_preamble() -> None:
    ds = Deidentifier(KEY).dataset(_image())
    data = encode(ds)
    assert data[:128] == b"\0" * 128 and data[128:132] == b"DICM"
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.SOPInstanceUID == ds.SOPInstanceUID and back.PixelData == ds.PixelData
    bare = _image()
    del bare.file_meta
    assert Deidentifier(KEY).dataset(bare).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_source_preamble_never_copied_and_bare_data_sets_read(tmp_path: Path) -> None:
    path = _write(_image(), tmp_path / "in" / "polyglot.dcm")
    data = bytearray(path.read_bytes())
    data[:4] = b"MZ\x90\x00"  # an executable header hidden in the preamble
    path.write_bytes(bytes(data))
    bare = _image()
    fp = DicomBytesIO()  # a bare data set: no preamble, no file meta, implicit VR
    fp.is_implicit_VR, fp.is_little_endian = True, True
    write_dataset(fp, bare)
    (tmp_path / "in" / "bare.dcm").write_bytes(fp.getvalue())
    report = Deidentifier(KEY).files([tmp_path / "in"], tmp_path / "out")
    assert report.written == 2, report.skipped
    for out in report.outputs:
        head = out.read_bytes()[:132]
        assert head == b"\0" * 128 + b"DICM"
    syntaxes = {str(_read(p).file_meta.TransferSyntaxUID) for p in report.outputs}
    assert syntaxes == {ExplicitVRLittleEndian, ImplicitVRLittleEndian}


def test_files_skips_non_dicom_and_its_own_output(tmp_path: Path) -> None:
    _series(tmp_path / "in" / "series")
    (tmp_path / "in" / "notes.txt").write_text("Hans Mueller, MRN-778899")
    deid = Deidentifier(KEY)
    first = deid.files([tmp_path / "in"], tmp_path / "in" / "export")
    assert first.written == 6 and len(first.skipped) == 1 and first.files_seen == 7
    again = deid.files([tmp_path / "in"], tmp_path / "in" / "export")  # the output lies inside the input
    assert again.files_seen == 7 and again.written == 6


def test_duplicate_inputs_written_once(tmp_path: Path) -> None:
    src = _write(_image(), tmp_path / "in" / "a.dcm")
    (tmp_path / "in" / "b.dcm").write_bytes(src.read_bytes())
    report = Deidentifier(KEY).files([tmp_path / "in"], tmp_path / "out")
    assert report.written == 1 and report.duplicates == 1


def test_missing_patient_id_gets_a_per_study_pseudonym() -> None:
    deid = Deidentifier(KEY)
    ds = _image(PatientID="")
    out = deid.dataset(ds)
    assert out.PatientID == pseudonymise("no-patient-id:" + ds.StudyInstanceUID, KEY)


def test_bad_key_and_shift_refused() -> None:
    with pytest.raises(ConfigError):
        Deidentifier(b"short")
    with pytest.raises(ConfigError):
        Deidentifier(KEY, date_shift_days=0)
    with pytest.raises(ConfigError):
        Deidentifier(KEY, date_shift_days=100_000)


def test_shift_helpers() -> None:
    assert shift_date("20200301", -1) == "20200229"
    assert shift_date("2020.03.01", -1) == "20200229"
    assert shift_date("", -5) == ""
    assert shift_date("2020", -5) is None and shift_date("20201301", -5) is None
    assert shift_datetime("20200301000000.5-0500", -1) == "20200229000000.5-0500"
    assert shift_datetime("20200301", -1) == "20200229"
    assert shift_datetime("2020", -1) is None and shift_datetime("nonsense", -1) is None


def test_partial_dates_are_emptied_and_reported(tmp_path: Path) -> None:
    _write(_image(AcquisitionDateTime="2020"), tmp_path / "in" / "a.dcm")
    report = Deidentifier(KEY).files([tmp_path / "in"], tmp_path / "out")
    assert _read(report.outputs[0]).AcquisitionDateTime == ""
    assert any("not full dates" in w for w in report.warnings)


# ------------------------------------------------------------------------------------- the table
def test_table_actions_are_ones_the_standard_allows() -> None:
    for rule in TABLE.values():
        allowed = set(rule.basic.replace("*", "").split("/"))
        if rule.action is Action.KEEP:
            assert rule.option == "K" or "U" in allowed, rule
        elif rule.action is Action.SHIFT:
            assert rule.option == "C", rule
        elif rule.action is Action.PSEUDONYM:
            assert allowed & {"Z", "D"}, rule  # Z allows a dummy value (PS3.15 Table E.1-1a)
        elif rule.action is Action.REMOVE and allowed == {"D"}:
            # sequences that are Type 1 only in SR / presentation IODs: removed from images (E.1.1 note 13)
            assert dictionary_VR(rule.tag) == "SQ", rule
        else:
            assert rule.action.value in allowed and not rule.option, rule


def test_table_covers_a_brain_mri_study() -> None:
    listed = {rule.keyword: rule.action for rule in TABLE.values()}
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyID", "InstitutionName"):
        assert keyword in listed
    assert listed["SeriesDescription"] is Action.REMOVE  # strict Basic Profile: no Clean Descriptors Option
    assert listed["PatientAge"] is listed["PatientSex"] is listed["PatientWeight"] is Action.KEEP
    assert listed["StudyDate"] is listed["AcquisitionDateTime"] is Action.SHIFT
    assert {
        "RepetitionTime",
        "EchoTime",
        "FlipAngle",
        "PixelSpacing",
        "ImagePositionPatient",
        "PixelData",
    } <= SAFE_KEYWORDS
    assert not SAFE_KEYWORDS & set(listed)


def test_method_description() -> None:
    text = Deidentifier.method_description()
    assert "Basic Application Confidentiality Profile" in text and "Modified Dates" in text
    assert all(len(v) <= 64 for v in method_values())
