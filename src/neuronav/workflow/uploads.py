"""Upload → validated, encrypted, indexed study. Nothing is stored unless the whole upload is valid.

1. Each uploaded file (DICOM files or zip archives) is streamed into a private temporary folder
   (0700, inside the data folder) under a server-generated name, counting bytes against the cap.
2. The folder is scanned with :func:`neuronav.ingest.scan` (all the hostile-input checks: zip
   traversal and bombs, truncated files, absurd sizes). It must hold exactly one MR study with at
   least one T1c, FLAIR or T2 series (:func:`neuronav.analysis.inputs.from_inventory`) — or, with no
   DICOM in it, NIfTI files named after their sequences (a BraTS case, a BIDS anat folder; zipped:
   the stored copy is decrypted as a zip, so the names inside it survive), read by
   :func:`neuronav.analysis.inputs.from_paths` (no patient identity; content digest over the files).
3. Only then are the files encrypted into the object store (no database transaction is open while
   steps 1-3 run: they take seconds) and the Study row written, in one short transaction; on any
   error the objects already stored are deleted again. The temporary folder is always removed.

Decrypted material lives only in private temporary folders under ``<data>/tmp`` (0700, files 0600),
made by :func:`private_tmp` and removed by :func:`remove_tmp` on every exit path (``finally``, and an
``atexit`` hook for what a clean interpreter exit leaves). Each folder holds ``._neuronav-in-use``, a lock file
its process keeps locked (``flock``) while it uses the folder: the lock dies with the process, so after
a kill -9 :func:`sweep_private_tmp` (the server's start-up and its periodic maintenance, every Celery
worker) removes folders whose lock is free, never one in use by another thread or process, and
``neuronav verify`` names them (:func:`tmp_leftovers`).

The client's file names are PHI (hospitals make them from the patient's name and birth date): stored
only encrypted, ``encrypt_field(name, field key, "stored_objects.name")`` (:data:`NAME_COLUMN`).

Idempotent: the content hash is the SHA-256 of the sorted per-instance SOPInstanceUID and pixel-file
digests, so the same study uploaded twice (as files or as a zip) is one study; the second upload
returns the first (``created=False``).

Every edge that receives a study calls :func:`receive_files` with a :class:`FileSource`: where the
files come from and where their encrypted copies go. :class:`UploadedFiles` is the HTTP upload (and
the CLI's demo): streams spooled, then encrypted into the store. A DICOM association's instances are
already stored encrypted one by one as they arrive (:mod:`neuronav.workflow.dicom`): its source
decrypts them for the scan and hands the same objects to the study. Steps 2-3 are the same code for
both.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import StoredObjectRow, StudyRow
from neuronav.errors import InputError, NeuroNavError
from neuronav.storage import decrypt_field, encrypt_field, is_encrypted_field
from neuronav.storage.errors import UploadTooLargeError
from neuronav.storage.store import EncryptedObject, ObjectStore
from neuronav.workflow.search_index import index_identity

COPY_CHUNK = 1024 * 1024
# uploads validated and stored at once (each copies, scans, builds and encrypts ~70 MB and holds its
# volumes in memory): as many as there are cores; more would only make every upload of a burst finish
# late together instead of one after another (waiters are woken in arrival order)
_HEAVY = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
NAME_COLUMN = "stored_objects.name"
IN_USE = "._neuronav-in-use"  # the lock file of a private temporary folder (flock held while in use; the
# "._" prefix makes the DICOM scanner skip it, like macOS resource forks)
TMP_GRACE_S = 3600.0  # an entry without a lock file is swept once this old
_held: dict[str, int] = {}  # folder → the descriptor holding its lock
_held_lock = threading.Lock()


@dataclass(frozen=True)
class Upload:
    name: str  # the client's file name: shown, never used as a path
    stream: BinaryIO


@dataclass(frozen=True)
class Received:
    study: StudyRow
    created: bool


class FileSource(Protocol):
    """Where the files of one study come from, and where their encrypted copies go (module docstring).

    :func:`receive_files` calls :meth:`spool` (into a private temporary folder), validates what it
    spooled, then :meth:`keep` (the encrypted objects exist afterwards), then :meth:`attach` (their rows
    point at the new study, in the study's transaction) or, when anything fails or the study is held
    already, :meth:`discard` (what :meth:`keep` made for nothing is removed).
    """

    throttled: bool  # counted against the sender's upload rate (a DICOM node's limits are its association's)
    files: int  # how many files were spooled (audited)

    def spool(self, folder: Path, cap: int) -> list[tuple[str, Path]]:
        """Write the files into ``folder``: (the sender's file name, the spooled path) each; InputError if none."""
        ...

    def keep(self, store: ObjectStore, spooled: list[tuple[str, Path]]) -> None:
        """Make sure every file is stored encrypted."""
        ...

    def discard(self, store: ObjectStore) -> None:
        """Undo :meth:`keep` (nothing raised)."""
        ...

    def attach(self, db: Session, study: StudyRow, field_key: bytes) -> None:
        """Point the stored objects' rows at ``study`` (added or updated in ``db``, not committed)."""
        ...


class UploadedFiles:
    """An HTTP upload's (or a CLI command's) files: streamed into the folder, then encrypted into the store."""

    throttled = True

    def __init__(self, uploads: Iterable[Upload]) -> None:
        self.uploads = uploads
        self.objects: list[tuple[str, EncryptedObject]] = []
        self.files = 0

    def spool(self, folder: Path, cap: int) -> list[tuple[str, Path]]:
        spooled = _spool(self.uploads, folder, cap)
        self.files = len(spooled)
        return spooled

    def keep(self, store: ObjectStore, spooled: list[tuple[str, Path]]) -> None:
        for name, path in spooled:
            with open(path, "rb") as fh:
                self.objects.append((name, store.put(fh, kind="upload")))

    def discard(self, store: ObjectStore) -> None:
        for _, obj in self.objects:
            store.delete(obj.key, missing_ok=True)
        self.objects = []

    def attach(self, db: Session, study: StudyRow, field_key: bytes) -> None:
        for name, obj in self.objects:
            db.add(
                StoredObjectRow(
                    key=obj.key,
                    study_id=study.id,
                    kind="upload",
                    name=encrypt_field(name, field_key, NAME_COLUMN),
                    sha256=obj.sha256,
                    size_bytes=obj.size,
                )
            )


def private_tmp_root(settings: Settings) -> Path:
    """The private (0700) temporary folder inside the data folder, for decrypted files in transit."""
    root = settings.data_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    return root


def private_tmp(settings: Settings, prefix: str = "upload-") -> Path:
    """A new private temporary folder (0700), locked as in use by this process: the caller removes it
    with :func:`remove_tmp`."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=private_tmp_root(settings)))
    fd = os.open(folder / IN_USE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with _held_lock:
        _held[str(folder)] = fd
    return folder


def remove_tmp(folder: Path) -> None:
    """Remove a private temporary folder and what it holds (nothing raised: it may be gone already)."""
    shutil.rmtree(folder, ignore_errors=True)
    with _held_lock:
        fd = _held.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


@atexit.register
def _remove_held() -> None:
    """What a clean exit (SIGTERM handled, an exception out of main) leaves: removed (kill -9: the sweep)."""
    for folder in list(_held):
        remove_tmp(Path(folder))


def create_private(path: Path) -> BinaryIO:
    """A new file opened for writing, created 0600 whatever the umask."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _unused(entry: Path, now: float, grace_s: float) -> bool:
    """True when nothing uses ``entry`` of ``<data>/tmp``: its lock file is not locked (its process
    ended), or it has none and is older than ``grace_s``. Never blocks."""
    lock = entry / IN_USE
    if entry.is_dir() and not entry.is_symlink() and lock.is_file():
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:  # removed meanwhile by its owner
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # in use by a thread or process now
        finally:
            os.close(fd)
        return True
    try:
        return now - entry.lstat().st_mtime >= grace_s
    except FileNotFoundError:
        return False


def tmp_leftovers(settings: Settings, *, grace_s: float = TMP_GRACE_S) -> list[Path]:
    """Entries of ``<data>/tmp`` no thread or process uses (decrypted material a killed process left)."""
    root = settings.data_dir / "tmp"
    if not root.is_dir():
        return []
    now = time.time()
    return sorted(entry for entry in root.iterdir() if str(entry) not in _held and _unused(entry, now, grace_s))


def sweep_private_tmp(settings: Settings, *, grace_s: float = TMP_GRACE_S) -> list[Path]:
    """Remove :func:`tmp_leftovers`; folders in use (locked) are never touched. Returns what was removed."""
    removed = []
    for entry in tmp_leftovers(settings, grace_s=grace_s):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def upload_name(store: ObjectStore, obj: StoredObjectRow) -> str:
    """The client's file name of a stored object (decrypted; a name still in clear is returned as is)."""
    if not obj.name:
        return ""
    if not is_encrypted_field(obj.name):
        return obj.name
    return decrypt_field(obj.name, store.field_key(), NAME_COLUMN)


def _spool(uploads: Iterable[Upload], folder: Path, cap: int) -> list[tuple[str, Path]]:
    total = 0
    spooled: list[tuple[str, Path]] = []
    for n, up in enumerate(uploads):
        lower = up.name.lower()
        suffix = ".zip" if lower.endswith(".zip") else ".dcm"
        path = folder / f"{n:05d}-{uuid.uuid4().hex[:8]}{suffix}"
        with create_private(path) as out:
            while chunk := up.stream.read(COPY_CHUNK):
                total += len(chunk)
                if total > cap:
                    raise UploadTooLargeError(f"upload larger than the limit of {cap} bytes")
                out.write(chunk)
        spooled.append((up.name[:200], path))
    if not spooled:
        raise InputError("no files in the upload")
    return spooled


def content_digest(inventory: object) -> str:
    """SHA-256 over the sorted SOPInstanceUIDs with their series: the same images → the same digest."""
    from neuronav.ingest import Inventory

    assert isinstance(inventory, Inventory)
    h = hashlib.sha256()
    for uid in sorted(
        f"{s.series_instance_uid}/{i.sop_instance_uid}" for s in inventory.all_series for i in s.instances
    ):
        h.update(uid.encode("ascii", "replace") + b"\n")
    return h.hexdigest()


def receive_upload(
    db: Session, store: ObjectStore, settings: Settings, *, user_id: str, uploads: Iterable[Upload]
) -> Received:
    """:func:`receive_files` of uploaded streams (:class:`UploadedFiles`)."""
    return receive_files(db, store, settings, user_id=user_id, source=UploadedFiles(uploads))


def receive_files(db: Session, store: ObjectStore, settings: Settings, *, user_id: str, source: FileSource) -> Received:
    """Validate and store one study; raise InputError (naming the problem) and store nothing when invalid.

    ``db``'s transaction is committed first, and none is open while the files are spooled, scanned,
    validated and encrypted (seconds): on SQLite a transaction holds the database's write lock (BEGIN
    IMMEDIATE), so a long one would stop every other request, upload and analysis job meanwhile. The
    rows are written at the end, in a short transaction that checks for the same content again.
    """
    db.commit()  # the request's sign-in checks: not held through the slow part
    with _HEAVY:
        return _receive(db, store, settings, user_id=user_id, source=source)


def _receive(db: Session, store: ObjectStore, settings: Settings, *, user_id: str, source: FileSource) -> Received:
    from neuronav.analysis.inputs import from_inventory, from_paths, nifti_content, nifti_digest
    from neuronav.ingest import PatientIdentity, scan
    from neuronav.pseudonym import pseudonymise

    folder = private_tmp(settings)
    try:
        spooled = source.spool(folder, settings.max_upload_bytes)
        inventory = scan([folder])
        # a zip of NIfTI files named after their sequences (a BraTS case, a BIDS anat folder) is a study too
        nifti = nifti_content([folder])[0] if not inventory.studies else []
        try:
            inputs = from_paths([folder]) if nifti else from_inventory(inventory)
        except NeuroNavError as exc:
            message = str(exc)
            for name, path in spooled:  # the client's file names, never the server's paths
                message = message.replace(str(path), name)
            raise InputError(f"not an analysable brain MRI study: {message.replace(str(folder) + '/', '')}") from exc
        study_info = next(iter(inventory.studies.values())) if not nifti else None
        digest = content_digest(inventory) if study_info is not None else nifti_digest(nifti)
        existing = _same_content(db, digest)
        if existing is not None:
            return Received(existing, created=False)
        db.commit()
        source.keep(store, spooled)
        existing = _same_content(db, digest)  # stored meanwhile by an upload of the same study
        if existing is not None:
            source.discard(store)
            return Received(existing, created=False)
        key = store.field_key()
        patient = study_info.patient if study_info is not None else PatientIdentity()  # NIfTI: no identity

        def enc(value: str, column: str) -> str | None:
            return encrypt_field(value, key, column) if value else None

        sequences = {
            name: {
                "series_uid_digest": hashlib.sha256(s.series_instance_uid.encode()).hexdigest()[:16],
                "images": len(s.instances),
                "description": s.metadata.series_description[:64],
            }
            for name, s in inputs.series.items()
        } or {name: {"images": 1, "description": "NIfTI"} for name in sorted(inputs.volumes)}
        study = StudyRow(
            content_sha256=digest,
            study_uid_digest=pseudonymise(study_info.study_instance_uid)[4:] if study_info is not None else None,
            patient_pseudonym=inputs.patient_pseudonym,
            patient_name_enc=enc(patient.patient_name, "studies.patient_name"),
            patient_id_enc=enc(patient.patient_id, "studies.patient_id"),
            patient_birth_date_enc=enc(patient.patient_birth_date, "studies.patient_birth_date"),
            patient_sex_enc=enc(patient.patient_sex, "studies.patient_sex"),
            patient_id_issuer_enc=enc(patient.issuer_of_patient_id, "studies.patient_id_issuer"),
            accession_enc=enc(patient.accession_number, "studies.accession"),
            referring_physician_enc=enc(patient.referring_physician_name, "studies.referring_physician"),
            study_uid_enc=enc(study_info.study_instance_uid, "studies.study_uid") if study_info else None,
            study_date=(study_info.study_date or "")[:8] or None if study_info else None,
            description=(study_info.study_description or "")[:200] or None if study_info else "NIfTI upload",
            sequences=sequences,
            n_files=inventory.n_instances if study_info is not None else len(nifti),
            size_bytes=sum(p.stat().st_size for _, p in spooled),
            uploaded_by=user_id,
        )
        db.add(study)
        db.flush()
        source.attach(db, study, key)
        index_identity(
            db,
            store,
            study.id,
            name=patient.patient_name,
            mrn=patient.patient_id,
            accession=patient.accession_number,
        )
        db.flush()
        return Received(study, created=True)
    except BaseException:
        source.discard(store)
        raise
    finally:
        remove_tmp(folder)


def _same_content(db: Session, digest: str) -> StudyRow | None:
    return db.scalars(select(StudyRow).where(StudyRow.content_sha256 == digest)).first()


def restore_upload(db: Session, store: ObjectStore, study_id: str, folder: Path) -> Path:
    """Decrypt a study's uploaded files into ``folder`` (a private temporary folder) for analysis."""
    return decrypt_upload(store, upload_objects(db, study_id), folder)


def upload_objects(db: Session, study_id: str) -> list[StoredObjectRow]:
    """The stored files of a study's upload, in upload order (InputError when there are none)."""
    objects = db.scalars(
        select(StoredObjectRow).where(StoredObjectRow.study_id == study_id, StoredObjectRow.kind == "upload")
    ).all()
    if not objects:
        raise InputError(f"study {study_id} has no stored upload")
    return sorted(objects, key=lambda o: o.created_at)


def decrypt_upload(store: ObjectStore, objects: list[StoredObjectRow], folder: Path) -> Path:
    """Decrypt the files of :func:`upload_objects` into ``folder`` (needs no database session)."""
    for n, obj in enumerate(objects):
        suffix = ".zip" if upload_name(store, obj).lower().endswith(".zip") else ".dcm"
        with store.open(obj.key) as reader, create_private(folder / f"{n:05d}{suffix}") as out:
            for chunk in reader:
                out.write(chunk)
    return folder
