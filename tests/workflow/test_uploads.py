"""Uploads: one valid study stored encrypted and indexed; anything invalid stores nothing."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from neuronav.db.models import StoredObjectRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.errors import InputError, UnsafeInputError
from neuronav.storage import decrypt_field
from neuronav.storage.errors import UploadTooLargeError
from neuronav.workflow.uploads import Upload, receive_upload
from tests.workflow.conftest import Env


def upload(env: Env, *files: tuple[str, bytes]) -> StudyRow:
    with session_scope(env.settings.database) as db:
        return receive_upload(
            db, env.store, env.settings, user_id=env.user_id, uploads=[Upload(n, io.BytesIO(b)) for n, b in files]
        ).study


def counts(env: Env) -> tuple[int, int, int]:
    with session_scope(env.settings.database) as db:
        studies = db.scalar(select(func.count()).select_from(StudyRow)) or 0
        objects = db.scalar(select(func.count()).select_from(StoredObjectRow)) or 0
    return studies, objects, len(list(env.store.iter_keys()))


def test_a_zip_is_stored_encrypted_and_indexed_without_plain_phi(env: Env, phantom_zip: Path) -> None:
    data = phantom_zip.read_bytes()
    study = upload(env, ("study.zip", data))
    assert study.n_files == 576 and study.state == "received"
    assert {"T1", "T1c", "T2", "FLAIR"} <= set(study.sequences)
    assert study.patient_pseudonym and study.patient_pseudonym.startswith("NNP-")
    with zipfile.ZipFile(phantom_zip) as zf:
        import pydicom

        first = pydicom.dcmread(io.BytesIO(zf.read(zf.namelist()[0])))
    name = str(first.PatientName)
    assert study.patient_name_enc and name not in study.patient_name_enc
    assert decrypt_field(study.patient_name_enc, env.store.field_key(), "studies.patient_name") == name
    for path in env.settings.storage.rglob("*"):
        if path.is_file():
            assert name.encode() not in path.read_bytes()
    assert counts(env) == (1, 1, 1)


def test_the_same_study_twice_is_one_study(env: Env, phantom_zip: Path) -> None:
    a = upload(env, ("a.zip", phantom_zip.read_bytes()))
    with session_scope(env.settings.database) as db:
        again = receive_upload(
            db,
            env.store,
            env.settings,
            user_id=env.user_id,
            uploads=[Upload("b.zip", io.BytesIO(phantom_zip.read_bytes()))],
        )
    assert not again.created and again.study.id == a.id
    assert counts(env) == (1, 1, 1)


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        ([("x.dcm", b"hello, not DICOM")], InputError, "no DICOM images found"),
        ([], InputError, "no files"),
        ([("evil.zip", b"PK\x03\x04 broken zip")], InputError, "evil.zip: not a readable zip archive"),
    ],
)
def test_bad_uploads_store_nothing(
    env: Env, files: list[tuple[str, bytes]], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        upload(env, *files)
    assert counts(env) == (0, 0, 0)
    assert not list((env.settings.data_dir / "tmp").glob("upload-*"))
    assert str(env.settings.data_dir) not in str(raised.value)  # no server paths in what the client reads


def test_path_traversal_in_a_zip_is_refused(env: Env) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../etc/evil.dcm", b"x" * 200)
    with pytest.raises(InputError):
        upload(env, ("evil.zip", buf.getvalue()))
    assert counts(env) == (0, 0, 0)
    assert not (env.settings.data_dir.parent / "etc").exists()


def test_an_oversized_upload_is_refused_whole(env: Env, phantom_zip: Path) -> None:
    small = env.settings.model_copy(update={"max_upload_bytes": 1000})
    with session_scope(env.settings.database) as db, pytest.raises(UploadTooLargeError):
        receive_upload(
            db, env.store, small, user_id=env.user_id, uploads=[Upload("s.zip", io.BytesIO(phantom_zip.read_bytes()))]
        )
    assert counts(env) == (0, 0, 0)
    assert issubclass(UploadTooLargeError, InputError) and not issubclass(UploadTooLargeError, UnsafeInputError)


def _nifti_zip(names: list[str]) -> bytes:
    import tempfile

    import numpy as np

    from neuronav.volume import Volume, save_nifti

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            data = np.full((8, 9, 10), float(10 * (i + 1)), dtype=np.float32)
            path = save_nifti(Volume(data, np.eye(4)), Path(tmp) / name)
            zf.write(path, f"case/{name}")
    return buf.getvalue()


def test_a_zip_of_a_brats_case_is_a_study_and_the_analysis_reads_it_back(env: Env, tmp_path: Path) -> None:
    from neuronav.analysis.inputs import from_paths
    from neuronav.workflow.uploads import restore_upload

    names = [f"BraTS-GLI-00009-000-{s}.nii.gz" for s in ("t1n", "t1c", "t2w", "t2f", "seg")]
    data = _nifti_zip(names)
    study = upload(env, ("case.zip", data))
    assert set(study.sequences) == {"T1", "T1c", "T2", "FLAIR"}
    assert study.n_files == 5 and study.patient_name_enc is None and study.study_uid_digest is None
    again = upload(env, ("same-case.zip", data))
    assert again.id == study.id
    assert counts(env) == (1, 1, 1)
    folder = tmp_path / "restored"
    folder.mkdir()
    with session_scope(env.settings.database) as db:
        restore_upload(db, env.store, study.id, folder)
    inputs = from_paths([folder])  # what the analysis job does
    assert inputs.files["T1c"] == "case/BraTS-GLI-00009-000-t1c.nii.gz"
    assert float(inputs.volumes["T1c"].data.max()) == 20.0  # the t1c file's own voxels


def test_a_zip_of_unnamed_nifti_stores_nothing_and_names_the_file(env: Env) -> None:
    with pytest.raises(InputError, match=r"cannot tell the sequence .*scan_0002\.nii\.gz"):
        upload(env, ("x.zip", _nifti_zip(["flair.nii.gz", "scan_0002.nii.gz"])))
    assert counts(env) == (0, 0, 0)
