"""Report outputs of one analysed study: the PDF with its four figures, and every format together.

Usage:  .venv/bin/python bench/report_outputs.py [--repeats 5] [--seed 7] [--work DIR]

Makes a phantom study (clinical geometry) and analyses it once (reused from --work when already
there), then times, median of --repeats after one warm-up:
  * ours, PDF:  read the analysis images, draw the 4 key images, lay out and write the PDF
                (``neuronav.report`` as ``neuronav report --format pdf`` does it);
  * peer:       reportlab alone laying out the same content — the same paragraphs, measurements
                table and the same four PNGs, already drawn — the floor any reportlab report pays;
  * ours, all:  json, pdf, seg, sr, epdf, sc, fhir, fhir-r5 and hl7 for the study, as
                ``neuronav report --format all --dicom STUDY`` writes them (source series read included).
Targets (issue 4): PDF with four figures ≤ 1 s; all outputs for one study ≤ 3 s.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, machine, print_ratio

from neuronav.report.model import Report
from neuronav.report.outputs import Written


def reportlab_alone(r: Report, pngs: list[bytes]) -> bytes:
    """The same content laid out by reportlab directly, with the figures already drawn."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    story: list[object] = [Paragraph(f"NeuroNav AI analysis report {r.report_id}", styles["Title"])]
    info = r.study_info.model_dump(mode="json")
    story.append(Table([[k, escape(str(v))[:90]] for k, v in info.items() if k != "models"]))
    story.append(Paragraph(escape(r.narrative.findings_text), styles["Normal"]))
    story.append(Paragraph(escape(r.narrative.impression), styles["Normal"]))
    rows = [["Measurement", "Value", "Unit"]] + [[m.label, f"{m.value:g}", m.unit] for m in r.measurements]
    table = Table(rows)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.grey)]))
    story += [Spacer(1, 4 * mm), table]
    story += [Image(io.BytesIO(p), width=60 * mm, height=60 * mm, kind="proportional") for p in pngs]
    for rec in r.recommendations:
        story.append(Paragraph(escape(f"[{rec.urgency}] {rec.text}"), styles["Normal"]))
    for d in r.disclaimers:
        story.append(Paragraph(escape(d), styles["Normal"]))
    buf = io.BytesIO()
    SimpleDocTemplate(buf, pagesize=A4).build(story)
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=None, help="keep the study and analysis here")
    args = parser.parse_args()

    from neuronav.analysis.inputs import from_paths
    from neuronav.analysis.pipeline import analyze
    from neuronav.findings import Findings
    from neuronav.phantom import generate_study
    from neuronav.report.build import build_report
    from neuronav.report.export import export
    from neuronav.report.figures import key_images, load_analysis_images
    from neuronav.report.outputs import FORMATS
    from neuronav.report.pdf import render_pdf

    work = args.work or Path(tempfile.mkdtemp(prefix="nn-bench-report-"))
    study, analysis = work / "study", work / "analysis"
    if not (study / "truth.json").is_file():
        generate_study(study, seed=args.seed, lesion="glioma", fmt="dicom", profile="clinical")
    inputs = from_paths([study / "dicom"])
    if not (analysis / "findings.json").is_file():
        print("analysing the phantom study once (about 20 s)…", file=sys.stderr)
        analyze(inputs, analysis)
    findings = Findings.model_validate_json((analysis / "findings.json").read_text())
    report = build_report(findings, analysis_dir=analysis)
    series = inputs.series[findings.study.reference_sequence]
    if report.visual_data.key_slices is None:
        print("the analysis folder has no segmentation to place key images on", file=sys.stderr)
        return 2
    centre = report.visual_data.key_slices.centre_ras_mm

    def ours_pdf() -> bytes:
        return render_pdf(report, load_analysis_images(analysis), paper="A4")

    images = load_analysis_images(analysis)
    pngs = [k.png for k in key_images(images, centre)]

    def peer() -> bytes:
        return reportlab_alone(report, pngs)

    out = work / "outputs"

    def ours_all() -> Written:
        return export(report, list(FORMATS), out, analysis_dir=analysis, series=series)

    for fn in (ours_pdf, peer, ours_all):
        fn()  # warm-up: imports, page cache
    t_pdf, _ = best_of(ours_pdf, args.repeats)
    t_peer, _ = best_of(peer, args.repeats)
    t_all, _ = best_of(ours_all, args.repeats)
    written = ours_all()
    print(f"machine: {machine()}")
    print(
        f"study: phantom seed {args.seed}, reference {findings.study.reference_sequence}, "
        f"{len(series.instances)} source images; report {report.report_id}"
    )
    print_ratio(
        "PDF report with 4 key images (target ≤ 1 s)",
        "NeuroNav render_pdf (images read + drawn)",
        t_pdf,
        "reportlab alone, same content, figures pre-drawn",
        t_peer,
        "ours ≤ 1 s",
    )
    print_ratio(
        "Every output of one study (target ≤ 3 s)",
        f"NeuroNav {len(FORMATS)} formats",
        t_all,
        "reportlab alone (the PDF only)",
        t_peer,
        "ours ≤ 3 s",
    )
    missed = [name for name, t, goal in (("PDF", t_pdf, 1.0), ("all outputs", t_all, 3.0)) if t > goal]
    for name in missed:
        print(f"TARGET MISSED: {name}")
    for fmt, seconds in written.seconds.items():
        print(f"    {fmt:8s} {seconds * 1000:8.1f} ms  {len(written.files[fmt])} file(s)")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
