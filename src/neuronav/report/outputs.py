"""Write a report in any set of formats: the one place that knows which writer makes which file.

========  ===========================  =========================================================
format    file                         written by
========  ===========================  =========================================================
json      report.json                  :mod:`.json_report` (validated against the published schema)
pdf       report.pdf                   :mod:`.pdf` (reportlab; key images from the analysis folder)
seg       seg.dcm                      :mod:`.dicom_seg` (highdicom Segmentation)
sr        sr.dcm                       :mod:`.dicom_sr` (highdicom Comprehensive 3D SR, TID 1500)
epdf      report-pdf.dcm               :mod:`.dicom_pdf` (Encapsulated PDF of the PDF report)
sc        sc/IM0001.dcm …              :mod:`.dicom_sc` (Secondary Capture, overlay burnt in)
fhir      fhir-r4b.json                :mod:`.fhir` (Bundle, FHIR R4B)
fhir-r5   fhir-r5.json                 :mod:`.fhir` (Bundle, FHIR R5)
hl7       report.hl7                   :mod:`.hl7v2` (ORU^R01, HL7 v2.5, ER7)
========  ===========================  =========================================================

DICOM formats need the source series of the analysis (``source``); the PDF and SC need the analysis
folder's images. Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset

from neuronav.errors import NeuroNavError, ReportError
from neuronav.report.figures import AnalysisImages, load_analysis_images
from neuronav.report.model import Report
from neuronav.report.sources import SourceSeries

FORMATS = ("json", "pdf", "seg", "sr", "epdf", "sc", "fhir", "fhir-r5", "hl7")
DICOM_FORMATS = frozenset({"seg", "sr", "epdf", "sc"})
Paper = Literal["A4", "Letter"]


def parse_formats(text: str) -> list[str]:
    """``"json,pdf"`` → ["json", "pdf"]; ``all`` = every format; ReportError for an unknown one."""
    wanted = [t.strip().lower() for t in text.split(",") if t.strip()]
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
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    from pydicom import config

    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    fp.is_little_endian = True
    fp.is_implicit_VR = syntax == ImplicitVRLittleEndian
    mode = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE  # values were validated when they were set
    try:
        write_dataset(fp, ds)
    finally:
        config.settings.writing_validation_mode = mode
    return fp.getvalue()


def write_outputs(
    report: Report,
    formats: Iterable[str],
    out_dir: Path,
    *,
    analysis_dir: Path | None = None,
    source: SourceSeries | None = None,
    paper: Paper = "A4",
) -> Written:
    """Write ``report`` in each of ``formats`` into ``out_dir``; return the files and seconds per format."""
    formats = list(formats)
    if DICOM_FORMATS & set(formats) and source is None:
        raise ReportError(
            f"{', '.join(sorted(DICOM_FORMATS & set(formats)))} need the source DICOM series of the analysis "
            "(neuronav report … --dicom STUDY)"
        )
    if "seg" in formats and analysis_dir is None:
        raise ReportError("DICOM SEG needs the analysis folder (segmentation.nii.gz)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = Written()
    images = None
    if analysis_dir is not None and {"pdf", "epdf", "sc", "hl7", "fhir", "fhir-r5"} & set(formats):
        images = load_analysis_images(analysis_dir)
    pdf_bytes: bytes | None = None
    background: _Child | None = None
    if "sc" in formats:
        if images is None:
            raise ReportError("Secondary Capture images need the analysis folder (reference and segmentation)")
        if _can_fork():  # the largest output, made on the second core while this process makes the others
            sc_images, sc_source = images, source
            background = _Child(lambda: len(_write_sc(report, sc_images, sc_source, out_dir)))

    def pdf() -> bytes:
        nonlocal pdf_bytes
        if pdf_bytes is None:
            from neuronav.report.pdf import render_pdf

            pdf_bytes = render_pdf(report, images, paper=paper)
        return pdf_bytes

    try:
        _write_each(report, formats, out_dir, written, analysis_dir, source, images, pdf, background)
    except BaseException:
        if background is not None:
            background.cancel()
            shutil.rmtree(out_dir / ".sc.partial", ignore_errors=True)
        raise
    if background is not None:
        seconds = background.result()
        written.files["sc"] = sorted((out_dir / "sc").glob("IM*.dcm"))
        written.seconds["sc"] = seconds
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
    background: _Child | None,
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
            paths = [_atomic(out_dir / "sr.dcm", _dicom_bytes(make_sr(report, source, seg=seg_ds)))]
        elif fmt == "epdf":
            from neuronav.report.dicom_pdf import make_encapsulated_pdf

            assert source is not None
            paths = [_atomic(out_dir / "report-pdf.dcm", _dicom_bytes(make_encapsulated_pdf(report, pdf(), source)))]
        elif fmt == "sc":
            if background is not None:
                continue  # written by the child process started above
            paths = _write_sc(report, images, source, out_dir)
        elif fmt in ("fhir", "fhir-r5"):
            import json

            from neuronav.report.fhir import make_bundle

            version: Literal["R4B", "R5"] = "R5" if fmt == "fhir-r5" else "R4B"
            bundle = make_bundle(report, version=version, pdf=pdf())
            name = "fhir-r5.json" if version == "R5" else "fhir-r4b.json"
            paths = [_atomic(out_dir / name, (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode())]
        elif fmt == "hl7":
            from neuronav.report.hl7v2 import make_oru

            message = make_oru(report, pdf=pdf())
            paths = [_atomic(out_dir / "report.hl7", message.encode("utf-8"))]
        else:
            raise ReportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        written.files[fmt] = paths
        written.seconds[fmt] = time.perf_counter() - t0


def _write_sc(report: Report, images: AnalysisImages | None, source: SourceSeries | None, out_dir: Path) -> list[Path]:
    """The Secondary Capture series into ``out_dir/sc`` (replacing an earlier one only once complete)."""
    from neuronav.report.dicom_sc import make_secondary_captures

    assert images is not None and source is not None
    tmp, final, old = out_dir / ".sc.partial", out_dir / "sc", out_dir / ".sc.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for n, ds in enumerate(make_secondary_captures(report, images, source), start=1):
            (tmp / f"IM{n:04d}.dcm").write_bytes(_dicom_bytes(ds))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return sorted(final.glob("IM*.dcm"))


def _can_fork() -> bool:
    """A forked helper is used when there is a second core and this process may have children
    (Celery's prefork workers and other daemonic processes may not)."""
    import multiprocessing

    return (
        hasattr(os, "fork")
        and len(os.sched_getaffinity(0)) > 1
        and not multiprocessing.current_process().daemon
        and os.environ.get("NEURONAV_REPORT_SERIAL", "") != "1"
    )


class _Child:
    """Run ``work`` in a forked process (its inputs are inherited, not pickled); :meth:`result` waits."""

    def __init__(self, work: Callable[[], int]) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)

        def run() -> None:
            t0 = time.perf_counter()
            try:
                work()
                send.send(("ok", time.perf_counter() - t0))
            except NeuroNavError as exc:
                send.send(("error", str(exc)))
            except Exception as exc:  # reported to the parent as a failure, with its type
                send.send(("error", f"Secondary Capture writer failed ({type(exc).__name__}: {exc})"))

        self._proc = ctx.Process(target=run, name="neuronav-sc", daemon=True)
        self._proc.start()
        send.close()

    def cancel(self) -> None:
        """Stop the child (the parent failed): nothing it made is kept."""
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join()
        self._recv.close()

    def result(self) -> float:
        try:
            status, value = self._recv.recv()
        except EOFError:
            self._proc.join()
            raise ReportError(
                f"the Secondary Capture writer stopped without a result (exit code {self._proc.exitcode})"
            ) from None
        finally:
            self._recv.close()
        self._proc.join()
        if status != "ok":
            raise ReportError(str(value))
        return float(value)
