"""Write a report in any set of formats: the one place that knows which writer makes which file.

========  ===========================  =========================================================
format    file                         written by
========  ===========================  =========================================================
json      report.json                  :mod:`.json_report` (validated against the published schema)
pdf       report.pdf                   :mod:`.pdf` (reportlab; key images from the analysis folder)
seg       seg.dcm                      :mod:`.dicom_seg` (highdicom Segmentation)
sr        sr.dcm                       :mod:`.dicom_sr` (highdicom Comprehensive SR, TID 1500)
epdf      report-pdf.dcm               :mod:`.dicom_pdf` (Encapsulated PDF of the PDF report)
sc        sc/IM0001.dcm …              :mod:`.dicom_sc` (Secondary Capture, overlay burnt in)
fhir-r4   fhir-r4.json                 :mod:`.fhir` (transaction Bundle, FHIR R4; ``fhir`` is an alias)
fhir-r4b  fhir-r4b.json                :mod:`.fhir` (transaction Bundle, FHIR R4B)
fhir-r5   fhir-r5.json                 :mod:`.fhir` (transaction Bundle, FHIR R5)
hl7       report.hl7                   :mod:`.hl7v2` (ORU^R01, HL7 v2.5, ER7)
========  ===========================  =========================================================

Identity: a report with ``patient`` set is written clinical (the PDF, HL7 and FHIR carry the patient's
name, MRN, birth date, sex, accession number); with ``patient`` None, pseudonymous.

DICOM formats need the source series of the analysis (``source``); the PDF and SC need the analysis
folder's images. Every file is written under a temporary name and renamed when complete. The SC
series is made by the report helper process (:mod:`._helper`) while the other formats are made,
when the caller started it (:func:`start_helper`: the web server's export, ``neuronav analyze``).
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset

from neuronav.errors import NeuroNavError, ReportError
from neuronav.report import _helper
from neuronav.report.figures import AnalysisImages, load_analysis_images
from neuronav.report.model import Report
from neuronav.report.sources import SourceSeries
from neuronav.volume.dicom_write import part10_stream

FORMATS = ("json", "pdf", "seg", "sr", "epdf", "sc", "fhir-r4", "fhir-r4b", "fhir-r5", "hl7")
ALIASES = {"fhir": "fhir-r4"}  # the FHIR release EHRs run
FHIR_FORMATS = {"fhir-r4": "R4", "fhir-r4b": "R4B", "fhir-r5": "R5"}
DICOM_FORMATS = frozenset({"seg", "sr", "epdf", "sc"})
Paper = Literal["A4", "Letter"]


def parse_formats(text: str) -> list[str]:
    """``"json,pdf"`` → ["json", "pdf"]; ``all`` = every format; ReportError for an unknown one."""
    wanted = [ALIASES.get(t.strip().lower(), t.strip().lower()) for t in text.split(",") if t.strip()]
    if not wanted:
        raise ReportError(f"no format given; choose from {', '.join(FORMATS)} or all")
    if "all" in wanted:
        return list(FORMATS)
    unknown = [w for w in wanted if w not in FORMATS]
    if unknown:
        raise ReportError(f"unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)} or all")
    return [f for f in FORMATS if f in wanted]  # canonical order: pdf before what embeds it


@dataclass
class Written:
    files: dict[str, list[Path]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # formats not written, and why


def _atomic(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _dicom_bytes(ds: Dataset) -> bytes:
    """A DICOM file (preamble, file meta, data set) in memory.

    Native little-endian syntaxes are written directly (pydicom's ``save_as`` validates and copies
    the file meta of every one of a few hundred Secondary Capture images); others go through save_as.
    Nothing global is changed: the values are valid when set, and every text is UTF-8 (ISO_IR 192),
    so pydicom's writer has nothing to warn about.
    """
    from pydicom.filewriter import write_dataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    fp = part10_stream(ds.file_meta, implicit=syntax == ImplicitVRLittleEndian)
    write_dataset(fp, ds)
    return fp.getvalue()


def start_helper(formats: Iterable[str]) -> None:
    """Start the report helper process now if ``formats`` will need it (:mod:`._helper`: for a server,
    or long enough before :func:`write_outputs` that its start-up overlaps other work)."""
    if "sc" in formats:
        _helper.warm_up()


def write_outputs(
    report: Report,
    formats: Iterable[str],
    out_dir: Path,
    *,
    analysis_dir: Path | None = None,
    source: SourceSeries | None = None,
    paper: Paper = "A4",
    predecessor: Report | None = None,
) -> Written:
    """Write ``report`` in each of ``formats`` into ``out_dir``; return the files and seconds per format.

    ``predecessor``: the version an amendment replaces (its SR is named in the new SR's Predecessor
    Documents Sequence).

    The Secondary Capture series is made by the report helper process (:mod:`._helper`: spawned,
    never forked) while this thread makes the other formats when :func:`start_helper` started it,
    else here.
    """
    formats = list(formats)
    if DICOM_FORMATS & set(formats) and source is None:
        raise ReportError(
            f"{', '.join(sorted(DICOM_FORMATS & set(formats)))} need the source DICOM series of the analysis "
            "(neuronav report … --dicom STUDY)"
        )
    if "seg" in formats and analysis_dir is None:
        raise ReportError("DICOM SEG needs the analysis folder (segmentation.nii.gz)")
    if "sc" in formats and analysis_dir is None:
        raise ReportError("Secondary Capture images need the analysis folder (reference and segmentation)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = Written()
    sc_tmp = out_dir / ".sc.partial"
    background: Future[tuple[str, float | str]] | None = None
    if "sc" in formats:
        assert analysis_dir is not None and source is not None
        shutil.rmtree(sc_tmp, ignore_errors=True)
        sc_tmp.mkdir()
        background = _helper.submit(_sc_task, report, source, analysis_dir, sc_tmp)
    try:
        images = None
        needs_images = {"pdf", "epdf", "hl7", *FHIR_FORMATS} | ({"sc"} if background is None else set())
        if analysis_dir is not None and needs_images & set(formats):
            images = load_analysis_images(analysis_dir, segmentation=report.findings.segmentation.label_file)
        pdf_bytes: bytes | None = None

        def pdf() -> bytes:
            nonlocal pdf_bytes
            if pdf_bytes is None:
                from neuronav.report.pdf import render_pdf

                pdf_bytes = render_pdf(report, images, paper=paper)
            return pdf_bytes

        _write_each(
            report, formats, out_dir, written, analysis_dir, source, images, pdf, background is not None, predecessor
        )
        if background is not None:
            future, background = background, None  # a timeout or a dead helper is handled by wait
            status, value = _helper.wait(future, "the Secondary Capture writer")
            if status != "ok":
                raise ReportError(str(value))
            written.seconds["sc"] = float(value)
        if "sc" in formats:
            written.files["sc"] = _install_sc(sc_tmp, out_dir)
    except BaseException as exc:
        if background is not None:
            _helper.abandon(background, kill=not isinstance(exc, Exception))
        shutil.rmtree(sc_tmp, ignore_errors=True)
        raise
    return written


def _write_each(
    report: Report,
    formats: list[str],
    out_dir: Path,
    written: Written,
    analysis_dir: Path | None,
    source: SourceSeries | None,
    images: AnalysisImages | None,
    pdf: Callable[[], bytes],
    sc_elsewhere: bool,
    predecessor: Report | None = None,
) -> None:
    seg_ds = None
    for fmt in formats:
        t0 = time.perf_counter()
        paths: list[Path]
        if fmt == "json":
            from neuronav.report.json_report import report_json

            paths = [_atomic(out_dir / "report.json", report_json(report))]
        elif fmt == "pdf":
            paths = [_atomic(out_dir / "report.pdf", pdf())]
        elif fmt == "seg":
            from neuronav.report.dicom_seg import make_seg

            assert source is not None and analysis_dir is not None
            if report.findings.segmentation.volumes.whole_tumour_ml <= 0.0:
                written.notes["seg"] = "not written: nothing was segmented (a DICOM SEG needs at least one segment)"
                continue
            seg_ds = make_seg(report, analysis_dir, source)
            paths = [_atomic(out_dir / "seg.dcm", _dicom_bytes(seg_ds))]
        elif fmt == "sr":
            from neuronav.report.dicom_sr import make_sr

            assert source is not None
            sr = make_sr(report, source, seg=seg_ds, analysis_dir=analysis_dir, predecessor=predecessor)
            paths = [_atomic(out_dir / "sr.dcm", _dicom_bytes(sr))]
        elif fmt == "epdf":
            from neuronav.report.dicom_pdf import make_encapsulated_pdf

            assert source is not None
            paths = [_atomic(out_dir / "report-pdf.dcm", _dicom_bytes(make_encapsulated_pdf(report, pdf(), source)))]
        elif fmt == "sc":
            if sc_elsewhere:
                continue  # made by the report helper; installed by write_outputs once complete
            assert images is not None and source is not None
            _write_sc_files(report, images, source, out_dir / ".sc.partial")
            written.seconds[fmt] = time.perf_counter() - t0
            continue
        elif fmt in FHIR_FORMATS:
            import json

            from neuronav.report.fhir import make_bundle

            bundle = make_bundle(report, version=FHIR_FORMATS[fmt], pdf=pdf())  # type: ignore[arg-type]
            data = (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode()
            paths = [_atomic(out_dir / f"{fmt}.json", data)]
        elif fmt == "hl7":
            from neuronav.report.hl7v2 import make_oru

            message = make_oru(report, pdf=pdf())
            paths = [_atomic(out_dir / "report.hl7", message.encode("utf-8"))]
        else:
            raise ReportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        written.files[fmt] = paths
        written.seconds[fmt] = time.perf_counter() - t0


def _write_sc_files(report: Report, images: AnalysisImages, source: SourceSeries, folder: Path) -> None:
    """The Secondary Capture series as IM0001.dcm … in ``folder`` (an empty folder)."""
    from neuronav.report.dicom_sc import make_secondary_captures

    for n, ds in enumerate(make_secondary_captures(report, images, source), start=1):
        (folder / f"IM{n:04d}.dcm").write_bytes(_dicom_bytes(ds))


def _sc_task(report: Report, source: SourceSeries, analysis_dir: Path, folder: Path) -> tuple[str, float | str]:
    """Run in the report helper: ("ok", seconds) or ("error", message), never an exception to unpickle."""
    t0 = time.perf_counter()
    try:
        _write_sc_files(
            report,
            load_analysis_images(analysis_dir, segmentation=report.findings.segmentation.label_file),
            source,
            folder,
        )
    except NeuroNavError as exc:
        return ("error", str(exc))
    except Exception as exc:  # reported to the caller as a failure, with its type
        return ("error", f"Secondary Capture writer failed ({type(exc).__name__}: {exc})")
    return ("ok", time.perf_counter() - t0)


def _install_sc(tmp: Path, out_dir: Path) -> list[Path]:
    """Make the complete series in ``tmp`` the ``sc`` folder (replacing an earlier one only now)."""
    final, old = out_dir / "sc", out_dir / ".sc.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return sorted(final.glob("IM*.dcm"))
