"""scan(): a file, a folder tree, a zip, or several of these → studies → series; junk skipped with reasons."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, BasicTextSRStorage, ExplicitVRLittleEndian

from neuronav.ingest import Inventory, scan
from neuronav.volume.dicom import volume_from_series
from neuronav.volume.dicom_write import new_uid
from tests.ingest.conftest import make_zip, only_series, series_attrs, study_attrs, write_series


def _tree(root: Path) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Two studies; study A has two series in nested folders, study B one series. Returns files and UIDs."""
    study_a, study_b = study_attrs(), study_attrs(PatientID="OTHER", PatientName="OTHER^PERSON")
    s1, s2, s3 = series_attrs(1), series_attrs(2), series_attrs(1)
    files = {
        "a1": write_series(root / "patient" / "a" / "t1", study=study_a, series=s1)[0],
        "a2": write_series(root / "patient" / "a" / "deep" / "t2", study=study_a, series=s2, multiframe=True)[0],
        "b1": write_series(root / "patient" / "b", study=study_b, series=s3)[0],
    }
    uids = {
        "study_a": study_a["StudyInstanceUID"],
        "study_b": study_b["StudyInstanceUID"],
        "a1": s1["SeriesInstanceUID"],
        "a2": s2["SeriesInstanceUID"],
        "b1": s3["SeriesInstanceUID"],
    }
    return files, uids


def _check_tree(inv: Inventory, uids: dict[str, str]) -> None:
    assert set(inv.studies) == {uids["study_a"], uids["study_b"]}
    study_a = inv.studies[uids["study_a"]]
    assert set(study_a.series) == {uids["a1"], uids["a2"]}
    assert len(study_a.series[uids["a1"]].instances) == 8
    assert len(study_a.series[uids["a2"]].instances) == 1  # enhanced multi-frame: one file
    assert study_a.series[uids["a2"]].n_frames == 8
    assert set(inv.studies[uids["study_b"]].series) == {uids["b1"]}
    assert inv.studies[uids["study_b"]].patient.patient_id == "OTHER"
    assert inv.n_instances == 17


def test_single_file(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s")
    inv = scan([files[3]])
    assert inv.problems == []
    assert inv.files_seen == 1
    series = only_series(inv)
    assert [str(i.source) for i in series.instances] == [str(files[3])]
    assert series.instances[0].source.member is None


def test_folder_tree_is_read_recursively_and_grouped(tmp_path: Path) -> None:
    _, uids = _tree(tmp_path)
    inv = scan([tmp_path])
    assert inv.problems == []
    assert inv.files_seen == 17
    _check_tree(inv, uids)


def test_zip_archive_is_read_in_place(tmp_path: Path) -> None:
    files, uids = _tree(tmp_path / "tree")
    members = [(str(p.relative_to(tmp_path / "tree")), p) for group in files.values() for p in group]
    archive = make_zip(tmp_path / "study.zip", members)
    shutil.rmtree(tmp_path / "tree")
    inv = scan([archive])
    assert inv.problems == []
    _check_tree(inv, uids)
    for series in inv.all_series:
        for inst in series.instances:
            assert inst.source.path == str(archive) and inst.source.member is not None
    # a series read from the zip still builds its volume
    vol = volume_from_series(inv.studies[uids["study_a"]].series[uids["a1"]])
    assert vol.shape == (32, 32, 8)


def test_several_inputs_and_duplicates_counted_once(tmp_path: Path) -> None:
    files, uids = _tree(tmp_path / "tree")
    a1 = files["a1"]
    archive = make_zip(tmp_path / "copy.zip", [(f"x/{p.name}", p) for p in a1])  # same SOPInstanceUIDs again
    copy = tmp_path / "loose_copy.dcm"
    shutil.copy(a1[0], copy)
    inv = scan([tmp_path / "tree", archive, copy, files["b1"][0]])
    assert inv.problems == []
    _check_tree(inv, uids)
    assert inv.files_seen == 17 + 8 + 1 + 1
    assert inv.duplicates == 10
    series = inv.studies[uids["study_a"]].series[uids["a1"]]
    assert len({i.sop_instance_uid for i in series.instances}) == len(series.instances) == 8


def _sr_without_pixels(path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BasicTextSRStorage
    meta.MediaStorageSOPInstanceUID = UID(new_uid())
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = new_uid(), new_uid()
    ds.Modality = "SR"
    ds.save_as(path, enforce_file_format=True)


def test_non_dicom_files_are_skipped_with_a_reason_each(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "good")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image\n")
    (junk / "empty.dcm").write_bytes(b"")
    (junk / "brain.nii").write_bytes(b"\x5c\x01\x00\x00" + bytes(344))
    (junk / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    _sr_without_pixels(junk / "report.dcm")
    (junk / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # OS junk is ignored silently
    inv = scan([tmp_path, tmp_path / "does_not_exist"])
    assert len(only_series(inv).instances) == len(files)
    reasons = {Path(p.source).name: p.problem for p in inv.problems}
    assert set(reasons) == {"notes.txt", "empty.dcm", "brain.nii", "photo.jpg", "report.dcm", "does_not_exist"}
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "not a DICOM file" in reasons["photo.jpg"]
    assert "not a DICOM file" in reasons["empty.dcm"]
    assert "NIfTI file, not DICOM" in reasons["brain.nii"]
    assert reasons["report.dcm"] == "no pixel data (Basic Text SR Storage); not an image"
    assert reasons["does_not_exist"] == "no such file or folder"
    assert all(str(tmp_path) in p.source for p in inv.problems)


def test_symbolic_links_in_folders_are_not_followed(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "data")
    outside, _ = write_series(tmp_path / "outside")
    os.symlink(outside[0], tmp_path / "data" / "link.dcm")
    os.symlink(tmp_path / "outside", tmp_path / "data" / "linkdir")
    inv = scan([tmp_path / "data"])
    assert len(only_series(inv).instances) == len(files)
    by_name = {Path(p.source).name: p for p in inv.problems}
    assert by_name["link.dcm"].problem == "symbolic link skipped"
    assert by_name["linkdir"].problem == "symbolic link to a folder skipped"
    assert {p.severity for p in inv.problems} == {"warning"}


def test_progress_reports_each_file(tmp_path: Path) -> None:
    write_series(tmp_path / "s")
    (tmp_path / "junk.txt").write_text("x")
    seen: list[int] = []
    inv = scan([tmp_path], progress=seen.append)
    assert seen == list(range(1, 10))
    assert inv.files_seen == 9


def test_instances_keep_what_volume_building_needs(tmp_path: Path) -> None:
    files, vol = write_series(tmp_path / "s", slice_order="descending")
    inv = scan([tmp_path])
    series = only_series(inv)
    first = next(i for i in series.instances if str(i.source) == str(files[0]))
    assert (first.rows, first.columns, first.number_of_frames) == (32, 32, 1)
    assert first.instance_number == 1
    assert first.image_orientation == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # RAS diagonal → LPS cosines
    assert first.pixel_offset is not None and first.transfer_syntax_uid == ExplicitVRLittleEndian
    built = volume_from_series(series)
    np.testing.assert_array_equal(built.data, vol.data)
    np.testing.assert_allclose(built.affine, vol.affine, atol=1e-5)


def test_zip_members_read_their_pixels_at_the_scanned_offset(tmp_path: Path) -> None:
    """Native little-endian pixels in a zip member are read from the member's bytes at the offset the
    scan found (no second DICOM parse), and give the same voxels as the files on disk."""
    files, vol = write_series(tmp_path / "s", slice_order="descending")
    archive = make_zip(tmp_path / "s.zip", [(p.name, p) for p in files])
    zipped = only_series(scan([archive]))
    assert all(i.source.member is not None and i.pixel_offset is not None for i in zipped.instances)
    built = volume_from_series(zipped)
    np.testing.assert_array_equal(built.data, vol.data)
    np.testing.assert_array_equal(built.affine, volume_from_series(only_series(scan([tmp_path / "s"]))).affine)
