"""DICOM SR (TID 1500): every measurement of the report, read back through highdicom, pydicom and dcmtk."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.uid import ComprehensiveSRStorage
from scipy import ndimage as ndi
from skimage.draw import polygon2mask

from neuronav.errors import ReportError
from neuronav.report import codes
from neuronav.report.build import build_report, location_text
from neuronav.report.dicom_seg import make_seg
from neuronav.report.dicom_sr import make_sr
from neuronav.report.lifecycle import edit, sign
from neuronav.report.model import Measurement, Report
from neuronav.report.sources import SourceSeries
from tests.conftest import require_binary
from tests.report.conftest import Analysed

SIGNED_AT = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
TRACKING_IDENTIFIER = ("112039", "DCM")
ALGORITHM_NAME = ("111001", "DCM")
ALGORITHM_VERSION = ("111003", "DCM")

Group = hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations


def _bytes(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _concept(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    value = code.get("CodeValue") or code.get("LongCodeValue")
    return str(value), str(code.CodingSchemeDesignator)


def _texts(item: Dataset, concept: tuple[str, str]) -> list[str]:
    return [
        str(c.TextValue) for c in item.get("ContentSequence", []) if c.ValueType == "TEXT" and _concept(c) == concept
    ]


@pytest.fixture(scope="module")
def report(analysed: Analysed) -> Report:  # module-scoped twin of the conftest fixture
    return build_report(analysed.findings, analysis_dir=analysed.analysis_dir)


@pytest.fixture(scope="module")
def seg(report: Report, analysed: Analysed) -> Dataset:
    return pydicom.dcmread(BytesIO(_bytes(make_seg(report, analysed.analysis_dir, analysed.source))))


@pytest.fixture(scope="module")
def label_frames(report: Report, analysed: Analysed) -> npt.NDArray[np.uint8]:
    """The label map as ``[slice, row, column]`` of the source images (nibabel, independently of the SR)."""
    data = np.asarray(nib.load(analysed.analysis_dir / "segmentation.nii.gz").dataobj).astype(np.uint8)
    return np.ascontiguousarray(data.transpose(2, 1, 0))


@pytest.fixture(scope="module")
def sr_file(report: Report, analysed: Analysed, seg: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sr") / "sr.dcm"
    path.write_bytes(_bytes(make_sr(report, analysed.source, seg=seg, analysis_dir=analysed.analysis_dir)))
    return path


def _groups(sr: hd.sr.ComprehensiveSR) -> list[Group]:
    content = sr.content
    return [*content.get_volumetric_roi_measurement_groups(), *content.get_image_measurement_groups()]


def _measurements_by_key(sr: hd.sr.ComprehensiveSR) -> dict[str, tuple[hd.sr.Measurement, Group]]:
    found: dict[str, tuple[hd.sr.Measurement, Group]] = {}
    for group in _groups(sr):
        for m in group.get_measurements():
            (key,) = _texts(m[0], TRACKING_IDENTIFIER)
            assert key not in found, f"{key} twice"
            found[key] = (m, group)
    return found


def _algorithm(m: hd.sr.Measurement, group: Group) -> tuple[str, str]:
    """(name, version) of a measurement's TID 4019: its own, else the group's (which applies to all its rows)."""
    for item in (m[0], group[0]):
        names, versions = _texts(item, ALGORITHM_NAME), _texts(item, ALGORITHM_VERSION)
        if names:
            return names[0], versions[0]
    raise AssertionError("no algorithm identification")


def _site(m: Measurement) -> tuple[str, str] | None:
    return (m.finding_site.value, m.finding_site.scheme) if m.finding_site else None


def test_every_measurement_is_in_the_sr_with_its_value_unit_concept_and_site(sr_file: Path, report: Report) -> None:
    sr = hd.sr.srread(sr_file)
    found = _measurements_by_key(sr)
    assert set(found) == {m.key for m in report.measurements}
    for row in report.measurements:
        m, _ = found[row.key]
        assert m.value == row.value, row.key  # exact: the SR is written from the measurements table
        assert (m.unit.value, m.unit.scheme_designator) == (row.unit, "UCUM"), row.key
        assert (m.name.value, m.name.scheme_designator, m.name.meaning) == (
            row.concept.value,
            row.concept.scheme,
            row.concept.meaning,
        ), row.key
        sites = [(s.value.value, s.value.scheme_designator) for s in m.finding_sites]
        assert sites == ([_site(row)] if row.finding_site else []), row.key
        if row.laterality in ("left", "right"):
            (site,) = m.finding_sites
            assert site.laterality is not None
            assert site.laterality.meaning.lower() == row.laterality


def test_every_measurement_names_its_algorithm(sr_file: Path, report: Report) -> None:
    found = _measurements_by_key(hd.sr.srread(sr_file))
    for row in report.measurements:
        m, group = found[row.key]
        assert _algorithm(m, group) == (
            " + ".join(p.name for p in row.produced_by),
            " + ".join(p.version for p in row.produced_by),
        ), row.key


def test_volumes_reference_the_seg_segments(sr_file: Path, seg: Dataset, report: Report) -> None:
    sr = hd.sr.srread(sr_file)
    groups = [g for g in sr.content.get_volumetric_roi_measurement_groups() if g.referenced_segment is not None]
    segments = {str(s.TrackingUID): s for s in seg.SegmentSequence}
    assert len(groups) == len(segments) == 3
    values = {m.key: m.value for m in report.measurements}
    for group in groups:
        ref = group.referenced_segment
        assert ref is not None
        item = ref[0]
        assert item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == seg.SOPInstanceUID
        number = item.ReferencedSOPSequence[0].ReferencedSegmentNumber
        segment = segments[str(group.tracking_uid)]  # the same tracking UID as the SEG's segment
        assert int(segment.SegmentNumber) == int(number)
        assert group.tracking_identifier == segment.TrackingID
        assert group.finding_type is not None
        assert group.finding_type.value == segment.SegmentedPropertyTypeCodeSequence[0].CodeValue
        (volume,) = group.get_measurements()
        assert volume.name == dcm_codes.SCT.Volume
        key = {"1": "necrotic_core_volume", "2": "oedema_volume", "3": "enhancing_volume"}[segment.TrackingID[12]]
        assert volume.value == values[key]
    # evidence: the SEG and every source image
    ds = pydicom.dcmread(sr_file)
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for s in ds.CurrentRequestedProcedureEvidenceSequence
        for series in s.ReferencedSeriesSequence
        for i in series.ReferencedSOPSequence
    }
    assert str(seg.SOPInstanceUID) in evidence


def _region_masks(group: Group, source: SourceSeries) -> dict[str, npt.NDArray[np.bool_]]:
    """SOP instance UID → the pixels whose centres lie inside the group's Image Region outlines on that image."""
    shape = (int(source.first.Rows), int(source.first.Columns))
    masks: dict[str, npt.NDArray[np.bool_]] = {}
    for region in group.roi or []:
        assert region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        points = region.value  # (column, row) in image coordinates: pixel centres at +0.5
        assert np.array_equal(points[0], points[-1]), "an image region is a closed polyline"
        uid = str(region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        inside = polygon2mask(shape, np.stack([points[:, 1] - 0.5, points[:, 0] - 0.5], axis=1))
        masks[uid] = masks.get(uid, np.zeros(shape, bool)) | inside
    return masks


def test_every_group_references_its_segment_or_its_region(
    sr_file: Path, report: Report, analysed: Analysed, label_frames: npt.NDArray[np.uint8]
) -> None:
    """TID 1411 everywhere: segments for the labels, outlines for the tumour and each lesion, the scan for the rest."""
    sr = hd.sr.srread(sr_file)
    assert not sr.content.get_image_measurement_groups()  # no TID 1501 group beside the TID 1411 ones
    groups = {str(g.tracking_identifier): g for g in sr.content.get_volumetric_roi_measurement_groups()}
    uids = [str(ds.SOPInstanceUID) for ds in analysed.source.datasets]
    for name, group in groups.items():
        assert (group.referenced_segment is not None) != bool(group.roi), name
    # the tumour outlines cover the tumour pixels of each slice (holes filled) and little else
    tumour = _region_masks(groups["Tumour"], analysed.source)
    with_tumour = {uids[k] for k in range(len(uids)) if label_frames[k].any()}
    assert set(tumour) == with_tumour
    for k, uid in enumerate(uids):
        if uid in tumour:
            truth = ndi.binary_fill_holes(label_frames[k] > 0)
            overlap = np.sum(truth & tumour[uid]) / np.sum(truth | tumour[uid])
            assert overlap > 0.8, (k, overlap)
    # each lesion: outlines on a subset of the tumour's slices, inside the tumour's outlines
    for lesion in report.findings.segmentation.lesions:
        masks = _region_masks(groups[f"Lesion {lesion.index}"], analysed.source)
        assert masks and set(masks) <= with_tumour
        for uid, mask in masks.items():
            assert np.sum(mask & ~tumour[uid]) <= 0.05 * np.sum(mask)
    # whole-brain measurements: the whole field of view of every slice
    whole = _region_masks(groups["Whole brain"], analysed.source)
    assert set(whole) == set(uids) and all(m.all() for m in whole.values())


def test_lesions_location_midline_shift_and_tumour_type(sr_file: Path, report: Report) -> None:
    sr = hd.sr.srread(sr_file)
    by_id = {g.tracking_identifier: g for g in _groups(sr)}
    f = report.findings
    lesion = f.segmentation.lesions[0]
    group = by_id["Lesion 1"]
    (site,) = group.finding_sites
    assert site.value == dcm_codes.SCT.ParietalLobe  # phantom lesion 1: left parietal
    assert site.laterality == dcm_codes.SCT.Left
    assert lesion.location.lobe == "parietal" and lesion.location.hemisphere == "left"
    (location,) = _texts(group[0], ("lesion-location", codes.PRIVATE_SCHEME))
    assert location == location_text(lesion)  # the report's plain words, no atlas code
    assert "AAL2" not in location
    (kind,) = _texts(by_id["Tumour"][0], ("tumour-type", codes.PRIVATE_SCHEME))
    assert kind == f.classification.label
    brain = by_id["Whole brain"]
    (shift,) = brain.get_measurements(name=hd.sr.CodedConcept("midline-shift", codes.PRIVATE_SCHEME, "x"))
    assert shift.value == round(f.midline_shift.shift_mm, 2)
    assert _texts(brain[0], ("midline-level", codes.PRIVATE_SCHEME)) == [f.midline_shift.level]


def test_private_codes_are_declared_and_long_values_kept(sr_file: Path) -> None:
    ds = pydicom.dcmread(sr_file)
    assert codes.PRIVATE_SCHEME in {i.CodingSchemeDesignator for i in ds.CodingSchemeIdentificationSequence}
    found = _measurements_by_key(hd.sr.srread(sr_file))
    asym, _ = found["ventricle_asymmetry"]  # "ventricle-asymmetry" is longer than a CodeValue (16 chars)
    assert asym.name.value == codes.ASYMMETRY.value
    assert "LongCodeValue" in asym[0].ConceptNameCodeSequence[0]


def test_sr_header_joins_the_source_study_and_says_preliminary(
    sr_file: Path, report: Report, analysed: Analysed
) -> None:
    ds = pydicom.dcmread(sr_file)
    src = analysed.source.first
    assert ds.SOPClassUID == ComprehensiveSRStorage and ds.Modality == "SR"
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber"):
        assert ds[keyword].value == src[keyword].value, keyword
    assert (ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag) == ("PARTIAL", "UNVERIFIED", "PRELIMINARY")
    assert "VerifyingObserverSequence" not in ds
    assert "not for clinical use" in ds.SeriesDescription and "PRELIMINARY v1" in ds.SeriesDescription
    assert ds.Manufacturer == "NeuroNav"
    sr = hd.sr.srread(sr_file)
    (device,) = sr.content.get_observer_contexts(observer_type=dcm_codes.DCM.Device)
    names = [str(i.TextValue) for i in device if i.ValueType == "TEXT" and _concept(i) == ("121013", "DCM")]
    assert names and names[0].startswith("NeuroNav ")
    assert not sr.content.get_observer_contexts(observer_type=dcm_codes.DCM.Person)
    disclaimers = [str(i.TextValue) for i in ds.ContentSequence[-1].ContentSequence]
    assert disclaimers == report.disclaimers


@pytest.mark.dcmtk
def test_dsrdump_reads_the_sr(sr_file: Path, report: Report) -> None:
    dsrdump = require_binary("dsrdump")
    run = subprocess.run([dsrdump, str(sr_file)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    whole = next(m for m in report.measurements if m.key == "whole_tumour_volume")
    assert "Imaging Measurement Report" in run.stdout
    assert f'NUM:(,,"Volume")="{whole.value}" (mL,UCUM,"milliliter")' in run.stdout
    assert "Midline shift of brain" in run.stdout


def test_signed_report_is_verified_by_the_signer(report: Report, analysed: Analysed, seg: Dataset) -> None:
    signed = sign(report, who="Dr A", role="radiologist", when=SIGNED_AT)
    ds = pydicom.dcmread(BytesIO(_bytes(make_sr(signed, analysed.source, seg=seg, analysis_dir=analysed.analysis_dir))))
    assert (ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag) == ("COMPLETE", "VERIFIED", "FINAL")
    (observer,) = ds.VerifyingObserverSequence
    assert str(observer.VerifyingObserverName) == "Dr A^"
    assert observer.VerifyingObserverName.family_name == "Dr A"
    assert observer.VerificationDateTime.startswith("20261129123000")
    assert "FINAL v1" in ds.SeriesDescription
    sr = hd.sr.srread(BytesIO(_bytes(ds)))
    (person,) = sr.content.get_observer_contexts(observer_type=dcm_codes.DCM.Person)
    names = [str(i.PersonName) for i in person if i.ValueType == "PNAME"]
    assert names == ["Dr A^"]


def test_changed_after_signing_is_refused(report: Report, analysed: Analysed) -> None:
    signed = sign(report, who="Dr A", role="radiologist", when=SIGNED_AT)
    tampered = signed.model_copy(update={"narrative": signed.narrative.model_copy(update={"impression": "changed"})})
    with pytest.raises(ReportError, match="does not match its content"):
        make_sr(tampered, analysed.source)


def test_edited_findings_flow_into_the_sr_without_a_seg(report: Report, analysed: Analysed) -> None:
    edited = edit(report, {"/findings/segmentation/volumes/whole_tumour_ml": 42.5}, who="Dr A", role="radiologist")
    sr = hd.sr.srread(BytesIO(_bytes(make_sr(edited, analysed.source))))
    found = _measurements_by_key(sr)
    assert found["whole_tumour_volume"][0].value == 42.5
    assert set(found) == {m.key for m in edited.measurements}
    assert not sr.content.get_volumetric_roi_measurement_groups()  # no SEG: TID 1501 groups only
    assert "PRELIMINARY v1" in sr.SeriesDescription  # an edit moves no status


def test_bad_inputs_are_refused(report: Report, analysed: Analysed, seg: Dataset, tmp_path: Path) -> None:
    nifti = report.model_copy(
        update={
            "study_info": report.study_info.model_copy(update={"input_kind": "nifti", "reference_series_uid": None})
        }
    )
    with pytest.raises(ReportError, match="made from NIfTI files"):
        make_sr(nifti, analysed.source)
    other = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)  # another report id
    with pytest.raises(ReportError, match="not written for report"):
        make_sr(other, analysed.source, seg=seg, analysis_dir=analysed.analysis_dir)
    not_seg = analysed.source.first
    with pytest.raises(ReportError, match="not a DICOM Segmentation"):
        make_sr(report, analysed.source, seg=not_seg, analysis_dir=analysed.analysis_dir)


def test_no_tumour_report_still_has_every_measurement(report: Report, analysed: Analysed) -> None:
    edited = edit(
        report,
        {"/findings/detection/tumour_detected": False, "/findings/segmentation/lesions": []},
        who="Dr A",
        role="radiologist",
    )
    sr = hd.sr.srread(BytesIO(_bytes(make_sr(edited, analysed.source))))
    assert set(_measurements_by_key(sr)) == {m.key for m in edited.measurements}
    ids = [g.tracking_identifier for g in _groups(sr)]
    assert not any(str(i).startswith("Lesion") for i in ids)
    assert not _texts(
        next(g for g in _groups(sr) if g.tracking_identifier == "Tumour")[0], ("tumour-type", "99NEURONAV")
    )


def test_change_rano_and_readers_measurements_are_structured(
    report: Report, analysed: Analysed, tmp_path: Path
) -> None:
    from neuronav.findings import Change
    from neuronav.workflow.annotations import reader_rows

    class Author:
        display_name = "Dr Reader"

    f = report.findings
    change = Change(
        prior_study="1.2.3.4",
        prior_date="20240101",
        volume_change_percent={"whole_tumour_ml": 42.5, "enhancing_ml": None},
        prior_volumes_ml={"whole_tumour_ml": 10.0, "enhancing_ml": 0.0},
        rano_category="progression",
        rule="enhancing +25 %",
    )
    r = build_report(f.model_copy(update={"change": change}), analysis_dir=analysed.analysis_dir)
    for row in reader_rows("a1", "distance", {"plane": "axial", "image": "T1c"}, {"length_mm": 23.4}, None, Author()):
        r = edit(r, {"/reader_measurements/-": row.model_dump(mode="json")}, who="Dr Reader", role="radiologist")
    path = tmp_path / "sr.dcm"
    path.write_bytes(_bytes(make_sr(r, analysed.source)))
    sr = hd.sr.srread(path)
    found = _measurements_by_key(sr)
    value, _ = found["change_whole_tumour_ml"]
    assert float(value[0].MeasuredValueSequence[0].NumericValue) == 42.5
    assert "change_enhancing_ml" not in found  # no percentage against a prior of 0
    reader, group = found["reader_a1_length"]
    assert float(reader[0].MeasuredValueSequence[0].NumericValue) == 23.4
    assert not _texts(reader[0], ALGORITHM_NAME) and not _texts(group[0], ALGORITHM_NAME)  # a reader's, not the AI's
    assert "Dr Reader" in [str(i.get("TextValue", "")) for i in group[0].ContentSequence]
    rano = [
        q for g in _groups(sr) for q in g.get_qualitative_evaluations()
        if q.name.value == codes.RANO.value
    ]  # fmt: skip
    assert [q.value.value for q in rano] == ["progression"]
