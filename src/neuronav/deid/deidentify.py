"""De-identify DICOM data sets and folders with the keyed profile of :mod:`neuronav.deid.profile`.

Keys and consistency
--------------------
Everything that replaces an identifier is derived from one secret key (at least 32 bytes), with
HMAC-SHA256, so that the same key always gives the same result and nobody without the key can
reverse or recompute it (a plain or salted hash of an identifier can be recomputed by anyone who
guesses the identifier):

* PatientID (and PatientName): :func:`neuronav.pseudonym.pseudonymise` of the original PatientID.
* UIDs: ``2.25.`` + the integer of the first 16 bytes of HMAC-SHA256(key, uid), with the version
  and variant bits of an RFC 9562 version 8 ("custom") UUID set, as PS3.5 B.2 asks of ``2.25``
  UIDs (122 bits of the HMAC remain). Every file of a study, every series of it, and every
  reference to it (ReferencedSOPInstanceUID, SourceImageSequence, ReferencedSeriesSequence…) maps
  to the same new UID, in this run and in any later run with the same key. SOP class, transfer
  syntax and coding-scheme UIDs, and every well-known DICOM UID (``1.2.840.10008.…``), are kept.
* Date shift: −365 … −1 whole days, from HMAC-SHA256(key, ``"neuronav-deid-date-shift"`` NUL
  PatientID). It is a different HMAC message from the pseudonym's, so a pseudonym tells nothing
  about the shift. All studies of one patient move by the same number of days: intervals between
  them are kept (the Retain Longitudinal Temporal Information with Modified Dates Option). A fixed
  ``date_shift_days`` can be given instead (the same shift for every patient).

Options
-------
``retain_dates=False`` drops the Modified Dates Option and ``retain_patient_characteristics=False``
the Retain Patient Characteristics Option: their attributes get the Basic Profile action instead
(:func:`neuronav.deid.profile.basic_action`), and the record written into every object
(DeidentificationMethod, DeidentificationMethodCodeSequence, LongitudinalTemporalInformationModified
``REMOVED``) names only what was applied.

Derived objects and refused objects
-----------------------------------
SEG, SR, Encapsulated PDF and Secondary Capture objects keep the modules their IODs require (see
:mod:`neuronav.deid`). TEXT content items of an SR keep their value only for the concepts of
:data:`~neuronav.deid.profile.SAFE_TEXT_CONCEPTS` (and NeuroNav's private scheme); any other is
replaced by a dummy and counted in the warnings. An Encapsulated PDF's document is replaced by a
placeholder PDF (BurnedInAnnotation NO). A Secondary Capture written by NeuroNav gets its burnt-in
text box (:func:`neuronav.report.dicom_sc.annotation_box`) blanked. :class:`DeidentificationError`
(an :class:`~neuronav.errors.InputError`) is raised for any other object whose BurnedInAnnotation is
YES (text burned into pixels cannot be removed by editing attributes). :meth:`Deidentifier.files`
lists such files in its report and goes on with the others.

Speed
-----
Kept elements are never decoded: they travel as pydicom raw elements (bytes in the source's
encoding) into the new data set, which records that encoding, and are written back as they are.
Only the elements that change (UIDs, dates, names) are decoded. The input data set is only read:
nothing is decoded into it or changed in it.

Nothing here logs or prints attribute values; reports carry counts and attribute keywords only
(input paths, which may name a patient, are kept apart in ``skipped`` / ``refused``).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import io
import os
import re
import struct
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread, dcmwrite
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element, write_dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DeflatedExplicitVRLittleEndian,
    EncapsulatedPDFStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from neuronav import __version__
from neuronav.deid.profile import (
    DATE_SHIFT_MAX_DAYS,
    DATE_SHIFT_MIN_DAYS,
    DE_IDENTIFYING_EQUIPMENT,
    RETAIN_CHARACTERISTICS_OPTION,
    RETAIN_DATES_OPTION,
    SAFE_TAGS,
    SAFE_TEXT_CONCEPTS,
    SAFE_TEXT_SCHEMES,
    TABLE,
    UID_KEEP_TAGS,
    WELL_KNOWN_UID_ROOT,
    Action,
    basic_action,
    method_codes,
    method_values,
)
from neuronav.errors import ConfigError, InputError, NeuroNavError
from neuronav.ingest.limits import DEFAULT_LIMITS, Limits
from neuronav.ingest.model import Problem
from neuronav.ingest.reader import looks_like_raw_dataset
from neuronav.ingest.sources import SourceReader, iter_sources
from neuronav.pseudonym import MIN_KEY_BYTES, pseudonymise
from neuronav.volume.dicom_write import part10_stream

_DATE_SHIFT_MESSAGE = b"neuronav-deid-date-shift\x00"
_MAX_FIXED_SHIFT_DAYS = 36_525  # a century: anything larger is a mistake
_DUMMY_TEXT = "DEIDENTIFIED"
_DUMMY: dict[str, Any] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "IS": "0",
    "DS": "0",
    "AS": "000D",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "FL": 0.0,
    "FD": 0.0,
}
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_DT = re.compile(r"^(\d{8})(\d{0,6}(?:\.\d{1,6})?)([+-]\d{4})?$")
_TAG_PATIENT_NAME = 0x00100010
_TAG_PATIENT_ID = 0x00100020
_TAG_STUDY_UID = 0x0020000D
_TAG_SERIES_UID = 0x0020000E
_TAG_SOP_CLASS_UID = 0x00080016
_TAG_SOP_INSTANCE_UID = 0x00080018
_TAG_BURNED_IN = 0x00280301
_TAG_TEXT_VALUE = 0x0040A160
_TAG_MANUFACTURER = 0x00080070
_TAG_ENCAPSULATED_DOCUMENT = 0x00420011
_TAG_DOCUMENT_LENGTH = 0x00420015
_TAG_PIXEL_DATA = 0x7FE00010
_REPLACED_PDF_TEXT = (
    "De-identified by NeuroNav: the original document was removed, because its text can identify the patient."
)
_UNDEFINED_LENGTH = 0xFFFFFFFF


class DeidentificationError(InputError):
    """An object that this profile cannot de-identify (burned-in annotation it cannot clean)."""


@dataclass
class _Stats:
    """What de-identification removed or could not handle: counts and keywords, never values."""

    datasets: int = 0
    private_removed: int = 0
    overlay_curve_removed: int = 0
    dates_emptied: int = 0
    no_patient_id: int = 0
    texts_replaced: int = 0
    unlisted_removed: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Context:
    """One patient: the pseudonym and the date shift."""

    pseudonym: str
    shift_days: int


@dataclass
class DeidentificationReport:
    """What :meth:`Deidentifier.files` did.

    ``skipped`` (not DICOM, unreadable, unsafe) and ``refused`` (burned-in annotation, structured
    content) name input files, whose paths can hold a patient's name, and ``outputs`` lists the
    files written: keep the report itself out of logs; :meth:`summary` is the PHI-free part.
    """

    out_dir: Path
    files_seen: int = 0
    written: int = 0
    duplicates: int = 0
    studies: int = 0
    series: int = 0
    patients: int = 0
    uid_map_size: int = 0
    seconds: float = 0.0
    method: str = ""
    skipped: list[Problem] = field(default_factory=list)
    refused: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts and warnings only: no paths, no attribute values."""
        return {
            "files_seen": self.files_seen,
            "written": self.written,
            "duplicates": self.duplicates,
            "skipped": len(self.skipped),
            "refused": len(self.refused),
            "studies": self.studies,
            "series": self.series,
            "patients": self.patients,
            "uid_map_size": self.uid_map_size,
            "seconds": round(self.seconds, 3),
            "method": self.method,
            "warnings": list(self.warnings),
        }


def shift_date(value: str, days: int) -> str | None:
    """A DA value moved by ``days``; None when it is not a full date (it cannot be shifted)."""
    text = value.strip()
    if not text:
        return ""
    if len(text) == 10 and text[4] == "." and text[7] == ".":  # ACR-NEMA YYYY.MM.DD
        text = text.replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        return (day + dt.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        return None


def shift_datetime(value: str, days: int) -> str | None:
    """A DT value moved by ``days``: time, fraction and timezone suffix kept; None if not shiftable.

    A DT with less than a full date (``YYYY``, ``YYYYMM``) cannot be shifted by days and gives None.
    """
    text = value.strip()
    if not text:
        return ""
    match = _DT.match(text)
    if match is None:
        return None
    day = shift_date(match.group(1), days)
    if day is None:
        return None
    return day + match.group(2) + (match.group(3) or "")


def _uuid8(value: int) -> int:
    """Set the version (8, custom) and variant bits of a 128-bit integer, as RFC 9562 defines them."""
    value = (value & ~(0xF000 << 64)) | (0x8000 << 64)
    return (value & ~(0xC000 << 48)) | (0x8000 << 48)


class Deidentifier:
    """PS3.15 Basic Application Level Confidentiality Profile, with the Retain Longitudinal Temporal
    Information with Modified Dates and Retain Patient Characteristics Options (each can be switched
    off: ``retain_dates``, ``retain_patient_characteristics``), keyed by ``key``.

    One instance is one de-identification run: it caches the UID map (:attr:`uid_map_size`) and the
    per-patient pseudonyms and shifts. The same key gives the same output in every run; the key
    must be kept secret (whoever has it can link pseudonyms and UIDs to guessed originals).
    """

    def __init__(
        self,
        key: bytes,
        date_shift_days: int | None = None,
        *,
        retain_dates: bool = True,
        retain_patient_characteristics: bool = True,
    ) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"the de-identification key must be bytes, at least {MIN_KEY_BYTES} of them")
        if date_shift_days is not None and (
            isinstance(date_shift_days, bool)
            or not isinstance(date_shift_days, int)
            or date_shift_days == 0
            or abs(date_shift_days) > _MAX_FIXED_SHIFT_DAYS
        ):
            raise ConfigError(
                "date_shift_days must be a non-zero whole number of days within a century "
                "(0 would keep the real dates, which the Modified Dates Option does not allow)"
            )
        self._key = key
        self._fixed_shift = date_shift_days
        self.retain_dates = bool(retain_dates)
        self.retain_patient_characteristics = bool(retain_patient_characteristics)
        dropped = {
            option
            for option, kept in (
                (RETAIN_DATES_OPTION, self.retain_dates),
                (RETAIN_CHARACTERISTICS_OPTION, self.retain_patient_characteristics),
            )
            if not kept
        }
        # the rows of a switched-off option: the Basic Profile action instead of the option's
        self._actions: dict[int, Action] = {
            tag: basic_action(rule.basic) if rule.option in dropped else rule.action for tag, rule in TABLE.items()
        }
        self._uids: dict[str, str] = {}
        self._patients: dict[str, _Context] = {}
        self._stats = _Stats()

    # ------------------------------------------------------------------------------------ keys
    @staticmethod
    def method_description(*, retain_dates: bool = True, retain_patient_characteristics: bool = True) -> str:
        """The DeidentificationMethod text written into every object (its values joined by ``\\``)."""
        return "\\".join(
            method_values(retain_dates=retain_dates, retain_patient_characteristics=retain_patient_characteristics)
        )

    @property
    def options(self) -> dict[str, bool]:
        """The options of this run, by name."""
        return {
            "retain_dates": self.retain_dates,
            "retain_patient_characteristics": self.retain_patient_characteristics,
        }

    @property
    def uid_map_size(self) -> int:
        """How many distinct UIDs this run has replaced."""
        return len(self._uids)

    def uid(self, value: str) -> str:
        """The replacement of one UID (well-known DICOM UIDs and empty values are returned as they are)."""
        text = str(value).strip().rstrip("\x00").strip()
        if not text or text.startswith(WELL_KNOWN_UID_ROOT):
            return text
        new = self._uids.get(text)
        if new is None:
            digest = hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).digest()
            new = self._uids[text] = f"2.25.{_uuid8(int.from_bytes(digest[:16], 'big'))}"
        return new

    def pseudonym(self, patient_id: str) -> str:
        """The pseudonymous PatientID (:func:`neuronav.pseudonym.pseudonymise` with this key)."""
        return self._patient(patient_id).pseudonym

    def date_shift(self, patient_id: str) -> int:
        """The number of days (negative) by which this patient's dates are moved."""
        return self._patient(patient_id).shift_days

    def _patient(self, patient_id: str) -> _Context:
        pid = patient_id.strip()
        ctx = self._patients.get(pid)
        if ctx is None:
            if self._fixed_shift is not None:
                shift = self._fixed_shift
            else:
                digest = hmac.new(self._key, _DATE_SHIFT_MESSAGE + pid.encode("utf-8"), hashlib.sha256).digest()
                span = DATE_SHIFT_MAX_DAYS - DATE_SHIFT_MIN_DAYS + 1
                shift = -(DATE_SHIFT_MIN_DAYS + int.from_bytes(digest[:8], "big") % span)
            ctx = self._patients[pid] = _Context(pseudonymise(pid, self._key), shift)
        return ctx

    # ------------------------------------------------------------------------------- data sets
    def dataset(self, ds: Dataset) -> Dataset:
        """A de-identified copy of ``ds`` (``ds`` itself is not changed).

        Raises DeidentificationError for BurnedInAnnotation YES on an object whose text it cannot clean.
        """
        return self._dataset(ds)

    def _dataset(self, ds: Dataset) -> Dataset:
        sop_class = _text(ds, _TAG_SOP_CLASS_UID)
        burned = _text(ds, _TAG_BURNED_IN).upper() == "YES"
        neuronav_sc = sop_class == SecondaryCaptureImageStorage and _text(ds, _TAG_MANUFACTURER) == "NeuroNav"
        if burned and sop_class != EncapsulatedPDFStorage and not neuronav_sc:
            raise DeidentificationError(
                "BurnedInAnnotation is YES: identifying text may be burned into the pixels, which this "
                "profile cannot clean (the Clean Pixel Data Option is applied only to NeuroNav's own "
                "Secondary Captures, whose text box it knows); object refused"
            )
        patient_id = _text(ds, _TAG_PATIENT_ID)
        if not patient_id:
            study = _text(ds, _TAG_STUDY_UID)
            if not study:
                raise DeidentificationError("neither PatientID nor StudyInstanceUID: no pseudonym can be derived")
            self._stats.no_patient_id += 1
            patient_id = "no-patient-id:" + study  # pseudonym and date shift per study
        ctx = self._patient(patient_id)

        out = self._clean(ds, ctx)
        if sop_class == EncapsulatedPDFStorage:
            _replace_document(out)
        elif burned:
            _clean_annotation_box(out)
        out[_TAG_PATIENT_ID] = DataElement(_TAG_PATIENT_ID, "LO", ctx.pseudonym)
        out[_TAG_PATIENT_NAME] = DataElement(_TAG_PATIENT_NAME, "PN", ctx.pseudonym)
        implicit, little = ds.original_encoding
        for tag, elem in _record(implicit, little, self.retain_dates, self.retain_patient_characteristics).items():
            out[tag] = elem
        out.file_meta = _file_meta(ds, out)
        self._stats.datasets += 1
        return out

    def _clean(self, src: Dataset, ctx: _Context) -> Dataset:
        """Apply the table to every element of ``src`` (recursively), into a new data set."""
        charset = src._character_set
        out = Dataset(parent_encoding=charset)
        implicit, little = src.original_encoding
        if implicit is not None:
            out.set_original_encoding(implicit, little, src.original_character_set)
        stats = self._stats
        for key in list(src.keys()):
            tag = int(key)
            group = tag >> 16
            if group & 1:
                stats.private_removed += 1
                continue
            if group == 0x0002 or tag & 0xFFFF == 0:  # file meta (rebuilt), group lengths (retired)
                continue
            if group & 0xFF00 in (0x5000, 0x6000):
                stats.overlay_curve_removed += 1
                continue
            elem = src.get_item(key)
            vr = _vr(elem)
            if tag == _TAG_TEXT_VALUE:  # Clean Structured Content: kept for known concepts only
                if _safe_text(src):
                    out[key] = elem if isinstance(elem, RawDataElement) else _copy(elem)
                else:
                    out.add_new(tag, "UT", _DUMMY_TEXT)
                    stats.texts_replaced += 1
                continue
            action = self._actions.get(tag)
            if action is None:
                if vr == "UI":
                    action = Action.KEEP if tag in UID_KEEP_TAGS else Action.UID
                elif tag in SAFE_TAGS:
                    action = Action.KEEP
                else:
                    stats.unlisted_removed[keyword_for_tag(tag) or "(unknown standard tag)"] += 1
                    continue
            if action is Action.REMOVE:
                continue
            if action is Action.KEEP and vr != "SQ":
                out[key] = elem if isinstance(elem, RawDataElement) else _copy(elem)
                continue
            self._apply(action, _decoded(src, elem, charset), out, ctx)
        return out

    def _apply(self, action: Action, elem: DataElement, out: Dataset, ctx: _Context) -> None:
        tag, vr, value = elem.tag, elem.VR, elem.value
        if vr == "SQ":
            if action is Action.KEEP:
                out.add_new(tag, "SQ", Sequence([self._clean(item, ctx) for item in value or ()]))
            elif action is Action.EMPTY:
                out.add_new(tag, "SQ", Sequence())
            # any other action on a sequence (D: dummy items) removes it
            return
        if action is Action.UID:
            if isinstance(value, MultiValue | list | tuple):
                out.add_new(tag, vr, [self.uid(v) for v in value])
            else:
                out.add_new(tag, vr, self.uid(value) if value else value)
        elif action is Action.SHIFT:
            self._shift(elem, out, ctx)
        elif action is Action.PSEUDONYM:
            text = str(value or "").strip()
            if not text:
                out.add_new(tag, vr, "")
            elif int(tag) == _TAG_PATIENT_ID:
                out.add_new(tag, vr, self.pseudonym(text))
            else:
                out.add_new(tag, vr, ctx.pseudonym)
        elif action is Action.EMPTY:
            out.add_new(tag, vr, None)
        elif action is Action.DUMMY:
            if vr in _DUMMY:
                out.add_new(tag, vr, _DUMMY[vr])
            elif vr in _TEXT_VRS:
                out.add_new(tag, vr, _DUMMY_TEXT)
            # other VRs (binary): removed
        elif action is Action.KEEP:
            out[tag] = _copy(elem)

    def _shift(self, elem: DataElement, out: Dataset, ctx: _Context) -> None:
        vr = elem.VR
        if vr == "TM":  # whole-day shifts leave the time of day unchanged
            out[elem.tag] = _copy(elem)
            return
        if vr not in ("DA", "DT"):
            return
        shift = shift_date if vr == "DA" else shift_datetime
        raw = elem.value
        values = list(raw) if isinstance(raw, MultiValue | list | tuple) else [raw]
        shifted: list[str] = []
        for v in values:
            new = shift(str(v) if v is not None else "", ctx.shift_days)
            if new is None:
                self._stats.dates_emptied += 1
                out.add_new(elem.tag, vr, None)
                return
            shifted.append(new)
        out.add_new(elem.tag, vr, shifted if len(shifted) > 1 else shifted[0])

    # ----------------------------------------------------------------------------------- files
    def files(
        self,
        paths: str | Path | Iterable[str | Path],
        out_dir: str | Path,
        *,
        limits: Limits = DEFAULT_LIMITS,
    ) -> DeidentificationReport:
        """De-identify every DICOM file under ``paths`` (files, folders, zip archives) into ``out_dir``.

        Writes ``out_dir/<new StudyInstanceUID>/<new SeriesInstanceUID>/<new SOPInstanceUID>.dcm``
        (each file written under a temporary name and renamed, so no half-written file is left) and
        returns a :class:`DeidentificationReport`. Files that are not DICOM are skipped and objects
        this profile cannot handle are refused; both are listed in the report, and the rest goes on.
        """
        start = time.perf_counter()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        out_root = os.path.realpath(out)
        items = [paths] if isinstance(paths, str | Path) else list(paths)
        report = DeidentificationReport(
            out_dir=out,
            method=self.method_description(
                retain_dates=self.retain_dates, retain_patient_characteristics=self.retain_patient_characteristics
            ),
        )
        before = copy.deepcopy(self._stats)
        studies: set[str] = set()
        series: set[str] = set()
        patients: set[str] = set()
        written: set[str] = set()
        folders: set[Path] = set()
        with SourceReader(limits) as reader:  # pydicom warnings: see neuronav.ingest.pydicom_messages
            for source in iter_sources(items, report.skipped, limits):
                if source.member is None and _inside(source.path, out_root):
                    continue  # our own output, when out_dir lies inside an input folder
                report.files_seen += 1
                where = str(source)
                try:
                    ds = _read(reader.read(source))
                except NeuroNavError as exc:
                    report.skipped.append(Problem(where, getattr(exc, "problem", str(exc))))
                    continue
                except Exception as exc:  # hostile or broken input must not stop the run
                    report.skipped.append(Problem(where, f"not readable DICOM ({type(exc).__name__})"))
                    continue
                try:
                    new = self._dataset(ds)
                except DeidentificationError as exc:
                    report.refused.append(Problem(where, exc.problem))
                    continue
                except Exception as exc:  # an element pydicom cannot decode: skip the file, not the run
                    report.skipped.append(Problem(where, f"cannot be de-identified ({type(exc).__name__})"))
                    continue
                sop = _text(new, _TAG_SOP_INSTANCE_UID)
                study = _text(new, _TAG_STUDY_UID)
                ser = _text(new, _TAG_SERIES_UID)
                if not (sop and study and ser):
                    report.skipped.append(Problem(where, "no SOP, series or study instance UID"))
                    continue
                if sop in written:
                    report.duplicates += 1
                    continue
                folder = out / study / ser
                if folder not in folders:
                    folder.mkdir(parents=True, exist_ok=True)
                    folders.add(folder)
                try:
                    data = encode(new)
                except Exception as exc:
                    report.skipped.append(Problem(where, f"cannot be written ({type(exc).__name__})"))
                    continue
                report.outputs.append(_atomic_write(folder / f"{sop}.dcm", data))
                written.add(sop)
                studies.add(study)
                series.add(ser)
                patients.add(_text(new, _TAG_PATIENT_ID))
        report.written = len(written)
        report.studies = len(studies)
        report.series = len(series)
        report.patients = len(patients)
        report.uid_map_size = self.uid_map_size
        report.warnings = _warnings(before, self._stats, report)
        report.seconds = time.perf_counter() - start
        return report


# ------------------------------------------------------------------------------ element helpers
def _vr(elem: DataElement | RawDataElement) -> str:
    """The VR of an element; for raw elements without one (implicit VR) or UN, the dictionary's."""
    vr = elem.VR
    if vr and vr != "UN":
        return str(vr)
    try:
        return str(dictionary_VR(elem.tag))
    except KeyError:
        return "UN"


def _decoded(src: Dataset, elem: DataElement | RawDataElement, charset: str | list[str]) -> DataElement:
    """The decoded form of an element of ``src``, without storing it back into ``src``."""
    if isinstance(elem, RawDataElement):
        return convert_raw_data_element(elem, encoding=charset, ds=src)
    return elem


def _copy(elem: DataElement) -> DataElement:
    """A copy that shares no mutable value with the original (multi-values become new lists)."""
    new = copy.copy(elem)
    if isinstance(elem.value, MultiValue):
        new.value = list(elem.value)
    return new


def _text(ds: Dataset, tag: int) -> str:
    """A top-level value of ``ds`` as text, read without decoding it in place."""
    elem = ds.get_item(tag)
    if elem is None:
        return ""
    value = _decoded(ds, elem, ds._character_set).value
    return str(value if value is not None else "").strip()


def _safe_text(item: Dataset) -> bool:
    """Whether the TEXT content item ``item`` has a concept name whose text values are kept."""
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return False
    code = names[0]
    scheme = str(code.get("CodingSchemeDesignator") or "")
    value = str(code.get("CodeValue") or code.get("LongCodeValue") or "")
    return scheme in SAFE_TEXT_SCHEMES or (scheme, value) in SAFE_TEXT_CONCEPTS


def _replacement_pdf() -> bytes:
    """A one-page PDF that says the document was removed (the Encapsulated PDF IOD needs a document)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    page = canvas.Canvas(buf, pagesize=A4, invariant=True)  # invariant: no creation date, same bytes each time
    page.setTitle("De-identified")
    page.drawString(56, A4[1] - 72, _REPLACED_PDF_TEXT)
    page.showPage()
    page.save()
    return buf.getvalue()


def _replace_document(out: Dataset) -> None:
    """Encapsulated PDF: the document (free text and pictures that may identify the patient) is replaced."""
    pdf = _replacement_pdf()
    if len(pdf) % 2:
        pdf += b"\0"  # OB values have an even length
    out[_TAG_ENCAPSULATED_DOCUMENT] = DataElement(_TAG_ENCAPSULATED_DOCUMENT, "OB", pdf)
    out[_TAG_DOCUMENT_LENGTH] = DataElement(_TAG_DOCUMENT_LENGTH, "UL", len(pdf))
    out[_TAG_BURNED_IN] = DataElement(_TAG_BURNED_IN, "CS", "NO")


def _clean_annotation_box(out: Dataset) -> None:
    """Clean Pixel Data for NeuroNav's Secondary Captures: the burnt-in text box is blanked (black).

    The box is the one :mod:`neuronav.report.dicom_sc` burns into the top-left corner (its largest
    extent for the image width); only uncompressed 8-bit RGB images, as NeuroNav writes them, are cleaned.
    """
    from neuronav.report.dicom_sc import annotation_box

    rows, cols = int(_text(out, 0x00280010) or 0), int(_text(out, 0x00280011) or 0)
    elem = out.get_item(_TAG_PIXEL_DATA)
    value = elem.value if elem is not None else None
    if (
        _text(out, 0x00280004) != "RGB"
        or _text(out, 0x00280100) != "8"
        or _text(out, 0x00280006) not in ("", "0")
        or not isinstance(value, bytes)
        or len(value) < rows * cols * 3
    ):
        raise DeidentificationError(
            "a NeuroNav Secondary Capture that is not uncompressed 8-bit RGB: its burnt-in text cannot be cleaned"
        )
    import numpy as np

    pixels = np.frombuffer(value[: rows * cols * 3], dtype=np.uint8).reshape(rows, cols, 3).copy()
    r, c = annotation_box(rows, cols)
    pixels[:r, :c] = 0
    data = pixels.tobytes() + value[rows * cols * 3 :]
    out[_TAG_PIXEL_DATA] = DataElement(_TAG_PIXEL_DATA, "OB", data)
    out[_TAG_BURNED_IN] = DataElement(_TAG_BURNED_IN, "CS", "NO")


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.add_new(0x00080100, "SH", value)  # CodeValue
    item.add_new(0x00080102, "SH", "DCM")  # CodingSchemeDesignator
    item.add_new(0x00080104, "LO", meaning)  # CodeMeaning
    return item


def _record_dataset(retain_dates: bool = True, retain_characteristics: bool = True) -> Dataset:
    """What every de-identified object records about its de-identification (PS3.15 E.1.1, E.3.6)."""
    options = {"retain_dates": retain_dates, "retain_patient_characteristics": retain_characteristics}
    ds = Dataset()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(method_values(**options))
    ds.DeidentificationMethodCodeSequence = Sequence([_code(v, m) for v, m in method_codes(**options)])
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if retain_dates else "REMOVED"
    equipment = Dataset()  # NeuroNav as the de-identifying equipment (any earlier items are removed)
    equipment.Manufacturer = "NeuroNav"
    equipment.ManufacturerModelName = "NeuroNav"
    equipment.SoftwareVersions = __version__
    equipment.PurposeOfReferenceCodeSequence = Sequence([_code(*DE_IDENTIFYING_EQUIPMENT)])
    equipment.ContributionDescription = "De-identified: PS3.15 Basic Application Level Confidentiality Profile"
    ds.ContributingEquipmentSequence = Sequence([equipment])
    return ds


_RECORDS: dict[tuple[bool, bool, bool, bool], dict[int, RawDataElement]] = {}


def _record(
    implicit: bool | None, little: bool | None, retain_dates: bool = True, retain_characteristics: bool = True
) -> dict[int, DataElement | RawDataElement]:
    """The record's elements, encoded once per encoding and options and shared as raw (immutable) elements.

    A data set not read from a file (no original encoding) gets freshly built elements instead.
    """
    if implicit is None or little is None:
        fresh = _record_dataset(retain_dates, retain_characteristics)
        return {int(tag): fresh[tag] for tag in list(fresh.keys())}
    cache_key = (implicit, little, retain_dates, retain_characteristics)
    cached = _RECORDS.get(cache_key)
    if cached is None:
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = implicit, little
        write_dataset(fp, _record_dataset(retain_dates, retain_characteristics))
        parsed = read_dataset(io.BytesIO(fp.getvalue()), implicit, little)
        cached = {}
        for tag in list(parsed.keys()):
            elem = parsed.get_item(tag)
            if isinstance(elem, RawDataElement):
                cached[int(tag)] = elem
        _RECORDS[cache_key] = cached
    return dict(cached)


def _file_meta(src: Dataset, out: Dataset) -> FileMetaDataset:
    """New file meta: the same SOP class and transfer syntax, the new SOP instance UID, our implementation."""
    meta = getattr(src, "file_meta", None)
    syntax = _text(meta, 0x00020010) if meta is not None else ""
    sop_class = _text(meta, 0x00020002) if meta is not None else ""
    if not syntax:
        implicit, little = src.original_encoding
        if little is False:
            syntax = ExplicitVRBigEndian
        else:  # a bare data set read from a file keeps its VR encoding; one built in memory is explicit
            syntax = ImplicitVRLittleEndian if implicit is True else ExplicitVRLittleEndian
    new = FileMetaDataset()
    new.add_new(0x00020002, "UI", sop_class or _text(out, _TAG_SOP_CLASS_UID))
    new.add_new(0x00020003, "UI", _text(out, _TAG_SOP_INSTANCE_UID))
    new.add_new(0x00020010, "UI", syntax)
    new.add_new(0x00020012, "UI", PYDICOM_IMPLEMENTATION_UID)
    new.add_new(0x00020013, "SH", f"NEURONAV_{__version__}"[:16])
    return new


# ------------------------------------------------------------------------------------ file I/O
def _read(data: bytes) -> Dataset:
    """Parse a file's bytes (a Part-10 file, or a bare data set as some old exports write)."""
    force = not (len(data) >= 132 and data[128:132] == b"DICM") and looks_like_raw_dataset(data[:8])
    try:
        return dcmread(io.BytesIO(data), force=force)
    except InvalidDicomError as exc:
        raise InputError("not a DICOM file") from exc


def encode(ds: Dataset) -> bytes:
    """``ds`` (a result of :meth:`Deidentifier.dataset`) as a Part-10 file, in memory.

    The preamble is zeros (a source preamble is never copied). Little-endian syntaxes (native and
    encapsulated) are written here, raw elements as the bytes they are; deflated and big-endian
    ones go through pydicom's ``dcmwrite``.
    """
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian):
        buf = io.BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        return buf.getvalue()
    fp = part10_stream(ds.file_meta, implicit=syntax == ImplicitVRLittleEndian)
    _write_le(fp, ds)
    return fp.getvalue()


def _write_le(fp: DicomBytesIO, ds: Dataset) -> None:
    """Write ``ds`` little-endian: its raw elements of the same encoding directly, the rest by pydicom."""
    implicit = bool(fp.is_implicit_VR)
    if ds.original_encoding != (implicit, True) or ds.original_character_set != ds._character_set:
        write_dataset(fp, ds)  # pydicom re-encodes everything that needs it
        return
    encodings = ds._character_set
    pack = struct.pack
    for key in sorted(ds.keys()):
        tag = int(key)
        if tag & 0xFFFF == 0:
            continue  # group lengths are retired
        elem = ds.get_item(key)
        value = elem.value if isinstance(elem, RawDataElement) else None
        if not isinstance(value, bytes) or elem.length == _UNDEFINED_LENGTH or elem.is_buffered:
            write_data_element(fp, elem, encodings)
            continue
        head = pack("<HH", tag >> 16, tag & 0xFFFF)
        n = len(value)
        if implicit:
            fp.write(head + pack("<I", n))
        elif elem.VR in EXPLICIT_VR_LENGTH_32:
            fp.write(head + str(elem.VR).encode("ascii") + b"\0\0" + pack("<I", n))
        elif elem.VR and n <= 0xFFFF:
            fp.write(head + str(elem.VR).encode("ascii") + pack("<H", n))
        else:
            write_data_element(fp, elem, encodings)
            continue
        fp.write(value)


def _atomic_write(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def _warnings(before: _Stats, after: _Stats, report: DeidentificationReport) -> list[str]:
    """PHI-free warnings: counts and attribute keywords only."""
    out: list[str] = []
    private = after.private_removed - before.private_removed
    if private:
        out.append(f"{private} private attributes removed")
    overlays = after.overlay_curve_removed - before.overlay_curve_removed
    if overlays:
        out.append(
            f"{overlays} overlay/curve attributes (groups 60xx/50xx) removed: overlays can hold annotations "
            "and the Clean Graphics Option is not implemented"
        )
    dates = after.dates_emptied - before.dates_emptied
    if dates:
        out.append(f"{dates} dates or date-times were not full dates and were emptied instead of shifted")
    no_id = after.no_patient_id - before.no_patient_id
    if no_id:
        out.append(f"{no_id} objects had no PatientID: their pseudonym and date shift are derived per study")
    unlisted = after.unlisted_removed - before.unlisted_removed
    if unlisted:
        names = ", ".join(f"{k} ({n})" for k, n in sorted(unlisted.items()))
        out.append(f"attributes neither in the profile table nor known to be safe were removed: {names}")
    texts = after.texts_replaced - before.texts_replaced
    if texts:
        out.append(f"{texts} structured-report text values of unknown concepts replaced by a dummy")
    if report.refused:
        out.append(f"{len(report.refused)} objects refused (burned-in annotation that cannot be cleaned)")
    if report.written:
        out.append(
            "pixel data is not cleaned and faces are not removed: a 3D head MRI can be rendered as a "
            "recognisable face (the Clean Recognizable Visual Features Option is not implemented)"
        )
    return out
