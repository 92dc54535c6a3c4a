"""Per-series metadata (classic and enhanced MR) and patient identity kept apart as PHI, never logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from neuronav.ingest import PatientIdentity, SeriesMetadata, scan
from neuronav.ingest.reader import patient_identity
from tests.ingest.conftest import SECRET_NAME, edit, only_series, series_attrs, study_attrs, write_series

ACQUISITION = {
    "Manufacturer": "ACME Medical",
    "ManufacturerModelName": "Brainscan 3000",
    "MagneticFieldStrength": "3",
    "SeriesDate": "20240103",
    "SeriesDescription": "t1_mprage_sag_p2 POST",
    "ProtocolName": "T1 MPRAGE",
    "RepetitionTime": "2300",
    "EchoTime": "2.98",
    "InversionTime": "900",
    "FlipAngle": "9",
    "ContrastBolusAgent": "Gadobutrol 1 mmol/ml",
    "ContrastBolusRoute": "IV",
    "ScanningSequence": ["GR", "IR"],
    "SequenceVariant": ["SK", "SP", "MP"],
    "MRAcquisitionType": "3D",
    "BodyPartExamined": "BRAIN",
}
PHI = {
    "PatientName": SECRET_NAME,
    "PatientID": "PID-0042",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "PatientAge": "054Y",
    "OtherPatientIDs": "OTHER-7",
    "InstitutionName": "St Elsewhere",
    "ReferringPhysicianName": "DR^WHO",
    "AccessionNumber": "ACC123",
}


def _study() -> dict[str, object]:
    return study_attrs(**PHI, StudyDate="20240102", StudyDescription="MRI BRAIN W/WO")


def test_classic_series_metadata(tmp_path: Path) -> None:
    write_series(tmp_path / "s", study=_study(), series=series_attrs(7, **ACQUISITION))
    inv = scan([tmp_path])
    md = only_series(inv).metadata
    assert md == SeriesMetadata(
        modality="MR",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        manufacturer="ACME Medical",
        manufacturer_model_name="Brainscan 3000",
        magnetic_field_strength=3.0,
        study_date="20240102",
        study_time="120000",
        series_date="20240103",
        study_description="MRI BRAIN W/WO",
        series_description="t1_mprage_sag_p2 POST",
        protocol_name="T1 MPRAGE",
        series_number=7,
        image_type=("ORIGINAL", "PRIMARY", "M", "NONE"),
        scanning_sequence="GR\\IR",
        sequence_variant="SK\\SP\\MP",
        mr_acquisition_type="3D",
        slice_thickness=2.5,
        spacing_between_slices=2.5,
        pixel_spacing=(0.8, 0.9),
        rows=32,
        columns=32,
        repetition_time=2300.0,
        echo_time=2.98,
        inversion_time=900.0,
        flip_angle=9.0,
        contrast_bolus_agent="Gadobutrol 1 mmol/ml",
        contrast_bolus_route="IV",
        body_part_examined="BRAIN",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    assert md.has_contrast
    [study] = inv.studies.values()
    assert (study.study_date, study.study_description) == ("20240102", "MRI BRAIN W/WO")


@pytest.mark.parametrize(("agent", "expected"), [("", False), ("NONE", False), ("-", False), ("Gd-DTPA", True)])
def test_has_contrast(agent: str, expected: bool) -> None:
    assert SeriesMetadata(contrast_bolus_agent=agent).has_contrast is expected


def _to_functional_groups(ds: Dataset) -> None:
    """Move the MR acquisition attributes of an enhanced object into its functional groups."""
    shared = ds.SharedFunctionalGroupsSequence[0]
    timing = Dataset()
    timing.RepetitionTime = ds.RepetitionTime
    timing.FlipAngle = ds.FlipAngle
    shared.MRTimingAndRelatedParametersSequence = [timing]
    echo = Dataset()
    echo.EffectiveEchoTime = ds.EchoTime
    shared.MREchoSequence = [echo]
    modifier = Dataset()
    modifier.InversionTimes = [ds.InversionTime]
    shared.MRModifierSequence = [modifier]
    agent = Dataset()
    agent.CodeValue, agent.CodingSchemeDesignator, agent.CodeMeaning = "C0", "99TEST", "Gadoterate"
    ds.ContrastBolusAgentSequence = [agent]
    for keyword in ("RepetitionTime", "FlipAngle", "EchoTime", "InversionTime", "ContrastBolusAgent"):
        delattr(ds, keyword)


def test_enhanced_multiframe_metadata_from_functional_groups(tmp_path: Path) -> None:
    acquisition = {k: v for k, v in ACQUISITION.items() if k != "ContrastBolusRoute"}
    files, _ = write_series(tmp_path / "s", study=_study(), series=series_attrs(3, **acquisition), multiframe=True)
    edit(files[0], _to_functional_groups)
    series = only_series(scan([tmp_path]))
    md = series.metadata
    assert md.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
    assert (md.repetition_time, md.echo_time, md.inversion_time, md.flip_angle) == (2300.0, 2.98, 900.0, 9.0)
    assert (md.slice_thickness, md.spacing_between_slices, md.pixel_spacing) == (2.5, 2.5, (0.8, 0.9))
    assert md.contrast_bolus_agent == "Gadoterate" and md.has_contrast
    assert (md.manufacturer, md.magnetic_field_strength) == ("ACME Medical", 3.0)
    inst = series.instances[0]
    assert inst.number_of_frames == 8
    assert inst.image_orientation == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # from PlaneOrientationSequence


def test_patient_identity_is_kept_apart_and_redacted(tmp_path: Path) -> None:
    write_series(tmp_path / "s", study=_study(), series=series_attrs(1, **ACQUISITION))
    inv = scan([tmp_path])
    [study] = inv.studies.values()
    assert study.patient == PatientIdentity(
        patient_name=SECRET_NAME,
        patient_id="PID-0042",
        patient_birth_date="19700101",
        patient_sex="F",
        patient_age="054Y",
        other_patient_ids="OTHER-7",
        institution_name="St Elsewhere",
        referring_physician_name="DR^WHO",
        accession_number="ACC123",
    )
    assert repr(study.patient) == "PatientIdentity(<redacted>)"
    for text in (repr(study), repr(inv), str(only_series(inv).metadata.to_dict()), repr(only_series(inv))):
        for value in PHI.values():
            assert value not in text


def test_patient_identity_of_a_sparse_dataset() -> None:
    assert patient_identity(Dataset()) == PatientIdentity()


def test_phi_never_reaches_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    study = _study()
    files, _ = write_series(tmp_path / "a", study=study, series=series_attrs(1, **ACQUISITION))
    write_series(tmp_path / "b", study=study, series=series_attrs(2), multiframe=True)
    # broken files make the readers warn and log: their messages must not carry PHI either
    (tmp_path / "a" / "truncated.dcm").write_bytes(files[0].read_bytes()[:-100])
    (tmp_path / "a" / "cut_header.dcm").write_bytes(files[1].read_bytes()[:700])
    edit(files[2], lambda ds: setattr(ds, "Rows", 64))
    with caplog.at_level(logging.DEBUG):
        inv = scan([tmp_path])
    assert len(inv.problems) == 3
    assert inv.all_series
    logged = caplog.text + "".join(str(p) for p in inv.problems)
    for value in PHI.values():
        assert value not in logged
    assert "SECRET" not in logged
