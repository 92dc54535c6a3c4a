"""The PDF report (reportlab platypus): what a radiologist reads, prints and signs.

Laid out as a radiology report (ACR / RSNA RadReport order), the AI's detail in an appendix::

    every page   header: patient name, MRN, birth date (or the pseudonym), report id, version, STATUS
                 footer: "Research software — Not for clinical use", status, "Page i of n"
                 a diagonal DRAFT watermark on every page until the report is signed
    page 1       title (MRI Brain) and the patient block: name, MRN (issuer), birth date, sex,
                 accession, referring physician, study date (or "pseudonymous" and the pseudonym)
                 report status line (id, version, status; an amendment's reason)
                 Clinical information · Technique (sequences) · Comparison (prior and date, or none)
                 Findings (text, then one row per lesion: location in words, core diameters, volumes,
                 the AI's mean tumour probability over the lesion,
                 oedema apart) · Impression (and the radiologist's comment) · Recommendations
                 Signature block: name, date and time, meaning (21 CFR 11.50), or "not signed"
    next         Key images (axial / coronal / sagittal with the segmentation, heatmap, legend)
    appendix     A AI measurements (label, value, unit; plain units, no "-0.0")
                 B AI detection and classification, secondary findings, anatomical review
                 C Change versus prior study (only with a prior)
                 D Lesion coordinates and slice annotations
                 E Provenance: models and versions, UIDs, series, processing time, atlas
                 F Edit history (only when edited) · G Signature verification (content SHA-256)
                 H Disclaimers

Only the 14 standard PDF fonts are used (nothing embedded) so every word is extractable text
(characters those fonts lack, e.g. CJK, show as a box); all text that does not come from this
module is escaped for reportlab's paragraph markup and stripped of control characters. The output
is deterministic: the same report gives the same bytes (reportlab's invariant mode; the PDF dates
are the report's creation time). Key images are PNGs from :func:`neuronav.report.figures.key_images`
placed as they are, no plotting library involved.
"""

from __future__ import annotations

import functools
import io
import re
import struct
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

import reportlab
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT
from reportlab.lib.pagesizes import A4, letter
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from neuronav import __version__
from neuronav.report.build import core_ml, location_text
from neuronav.report.figures import HEATMAP_FLOOR, LABEL_COLOURS, LABEL_NAMES, AnalysisImages, key_images
from neuronav.report.model import Report

Paper = Literal["A4", "Letter"]
PAGE_SIZES: dict[str, tuple[float, float]] = {"A4": A4, "Letter": letter}
TITLE = "NeuroNav AI analysis report"
DRAFT = "DRAFT"
# the watermark: a light red at low opacity (on white about RGB 248, 218, 218), found again by the tests
WATERMARK_RGB = (0.85, 0.2, 0.2)
WATERMARK_ALPHA = 0.18
UNITS = {"mL": "mL", "mm": "mm", "mm2": "mm²", "%": "%", "1": ""}  # UCUM → printed; "1": no unit printed
DECIMALS = {"mL": 2, "mm": 1, "mm2": 0, "%": 1, "1": 2}
NOT_FOR_CLINICAL_USE = "Research software — Not for clinical use. AI results require review by a physician."

# Dark colours: the status badge stays distinct from the bright overlay colours of the key images.
STATUS_COLOURS: dict[str, colors.Color] = {
    "preliminary": colors.HexColor("#8A5A00"),
    "reviewed": colors.HexColor("#1F4E9A"),
    "final": colors.HexColor("#1B5E20"),
    "amended": colors.HexColor("#5E2A84"),
}
GRID = colors.HexColor("#B0B0B0")
HEAD_BG = colors.HexColor("#E6E6E6")
MARGIN = 16 * mm
TOP_MARGIN = 22 * mm
BOTTOM_MARGIN = 18 * mm
MAX_EDIT_VALUE = 120  # characters of an edited value shown in the edit history

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName="Helvetica", fontSize=9, leading=11.5, alignment=TA_LEFT)
    return {
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=7, leading=8.5, textColor=colors.HexColor("#444444")),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8, leading=10),
        "cellbold": ParagraphStyle("cellbold", parent=base, fontName="Helvetica-Bold", fontSize=8, leading=10),
        "mono": ParagraphStyle("mono", parent=base, fontName="Courier", fontSize=8, leading=10),
        "title": ParagraphStyle("title", parent=base, fontName="Helvetica-Bold", fontSize=17, leading=21),
        "h2": ParagraphStyle(
            "h2",
            parent=base,
            fontName="Helvetica-Bold",
            fontSize=12,
            leading=15,
            spaceBefore=9,
            spaceAfter=4,
            keepWithNext=1,
        ),
        "h3": ParagraphStyle(
            "h3",
            parent=base,
            fontName="Helvetica-Bold",
            fontSize=9.5,
            leading=12,
            spaceBefore=5,
            spaceAfter=2,
            keepWithNext=1,
        ),
        "caption": ParagraphStyle("caption", parent=base, fontSize=7.5, leading=9, alignment=TA_CENTER),
        "legend": ParagraphStyle("legend", parent=base, fontSize=7.5, leading=9),
    }


S = _styles()


def esc(text: object) -> str:
    """Text safe for reportlab's paragraph markup: control characters dropped, ``& < >`` escaped,
    line breaks kept."""
    clean = _CONTROL.sub("", str(text)).replace("\r\n", "\n").replace("\r", "\n")
    return escape(clean).replace("\n", "<br/>")


def _p(text: str, style: str = "body") -> Paragraph:
    """A paragraph of markup written by this module (user text must go through :func:`esc`)."""
    return Paragraph(text, S[style])


def _t(text: object, style: str = "cell") -> Paragraph:
    """A paragraph of plain (escaped) text."""
    return Paragraph(esc(text), S[style])


def _num(value: float, decimals: int = 2) -> str:
    """A value to ``decimals`` places, never "-0.0" (a negative value that rounds to zero is zero)."""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def measurement_text(value: float, unit: str, key: str = "") -> tuple[str, str]:
    """(value, unit) as printed: plain units (mm², no "1" for a ratio), decimals by unit, no "-0.0"."""
    decimals = 3 if key == "ventricle_asymmetry" else DECIMALS.get(unit, 2)
    return _num(value, decimals), UNITS.get(unit, unit)


def _when(dt: datetime) -> str:
    if dt.tzinfo is None:
        return dt.isoformat(sep=" ", timespec="seconds")
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _date(text: str) -> str:
    """``20240223`` → ``2024-02-23``; anything else as given."""
    return f"{text[:4]}-{text[4:6]}-{text[6:]}" if re.fullmatch(r"\d{8}", text) else (text or "unknown")


def _table(
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float],
    *,
    header: bool = True,
    extra: Iterable[tuple[Any, ...]] = (),
) -> Table:
    style: list[tuple[Any, ...]] = [
        ("GRID", (0, 0), (-1, -1), 0.4, GRID),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), HEAD_BG))
    style.extend(extra)
    return Table(list(rows), colWidths=list(widths), repeatRows=1 if header else 0, style=TableStyle(style))


def _key_value(pairs: Sequence[tuple[str, Any]], width: float) -> Table:
    """Two columns: bold label, value (a Paragraph, or text that is escaped here)."""
    rows = [[_t(k, "cellbold"), v if isinstance(v, Paragraph) else _t(v)] for k, v in pairs]
    label_w = min(45 * mm, width * 0.3)
    return _table(rows, [label_w, width - label_w], header=False, extra=[("BACKGROUND", (0, 0), (0, -1), HEAD_BG)])


def _heading(text: str) -> Paragraph:
    return _p(esc(text), "h2")


# --- sections ---------------------------------------------------------------------------------------


def _patient(r: Report) -> Any:
    return getattr(r, "patient", None)  # the shared identity interface (Report.patient)


def _person(pn: str | None) -> str:
    """DICOM PN ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`` → ``FAMILY, Given Middle`` (as printed on a report)."""
    if not pn:
        return "not recorded"
    parts = [p.strip() for p in pn.split("=")[0].split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    rest = " ".join(x for x in (prefix, given, middle, suffix) if x)
    return f"{family.upper()}, {rest}" if family and rest else (family.upper() or rest or "not recorded")


def _sex(code: str | None) -> str:
    return {"M": "male", "F": "female", "O": "other"}.get(code or "", "not recorded")


def identity_line(r: Report) -> str:
    """The patient on one line (every page's header): name, MRN, birth date; or the pseudonym."""
    p = _patient(r)
    if p is None:
        return f"Pseudonymous: {r.study_info.patient_pseudonym or 'no patient identity'}"
    return f"{_person(p.name)} · MRN {p.mrn or 'not recorded'} · born {_date(p.birth_date or '')}"


def _identity_block(r: Report, width: float) -> list[Any]:
    p = _patient(r)
    s = r.study_info
    if p is None:
        pairs: list[tuple[str, Any]] = [
            ("Patient", "pseudonymous output: no name, MRN or birth date"),
            ("Pseudonym", s.patient_pseudonym or "not recorded"),
            ("Study date", _date(s.study_date)),
        ]
    else:
        mrn = p.mrn or "not recorded"
        if p.mrn and p.mrn_issuer:
            mrn = f"{p.mrn} ({p.mrn_issuer})"
        pairs = [
            ("Patient name", _person(p.name)),
            ("MRN", mrn),
            ("Birth date", _date(p.birth_date or "")),
            ("Sex", _sex(p.sex)),
            ("Accession number", p.accession_number or "not recorded"),
            ("Referring physician", _person(p.referring_physician)),
            ("Study date", _date(s.study_date)),
        ]
    half = (len(pairs) + 1) // 2
    left, right = pairs[:half], pairs[half:]
    rows: list[list[Any]] = []
    for i in range(half):
        row: list[Any] = [_t(left[i][0], "cellbold"), _t(left[i][1])]
        row += [_t(right[i][0], "cellbold"), _t(right[i][1])] if i < len(right) else ["", ""]
        rows.append(row)
    lw = 32 * mm
    vw = width / 2 - lw
    extra = [("BACKGROUND", (0, 0), (0, -1), HEAD_BG), ("BACKGROUND", (2, 0), (2, -1), HEAD_BG)]
    return [_table(rows, [lw, vw, lw, vw], header=False, extra=extra)]


def _status_line(r: Report) -> list[Any]:
    colour = STATUS_COLOURS.get(r.status, colors.black).hexval()[2:]
    signed = r.signature is not None
    state = r.status.upper() if signed else f"{r.status.upper()} — DRAFT, NOT SIGNED"
    line = (
        f'Report {esc(r.report_id)} · version {r.version} · status <font color="#{colour}"><b>{esc(state)}</b></font>'
        f" · created {esc(_when(r.created))}"
    )
    out: list[Any] = [_p(line, "cell")]
    if r.supersedes_version is not None:
        out.append(
            _p(
                f"<b>Amended report</b>: replaces version {r.supersedes_version}. Reason for the amendment: "
                f"{esc(r.amendment_reason or 'not given')}",
                "cell",
            )
        )
    return out


def _technique(r: Report) -> str:
    s = r.study_info
    used = ", ".join(s.sequences_used) or "none"
    text = f"MRI of the brain: {used} (reference {s.reference_sequence})."
    if s.sequences_missing:
        text += f" Not available: {', '.join(s.sequences_missing)}."
    return text + " Automated AI segmentation and measurement by NeuroNav (models in Appendix E)."


def _comparison(r: Report) -> str:
    c = r.change_versus_prior
    if c is None:
        return "None."
    return f"Prior MRI of {_date(c.prior_date)}: {c.rano_category.replace('_', ' ')} (volumes in Appendix C)."


def _lesion_table(r: Report, width: float) -> list[Any]:
    f = r.findings
    lesions = f.segmentation.lesions if f.detection.tumour_detected else []
    if not lesions:
        return []
    head = ["Lesion", "Location", "Core, axial (mm)", "Core (mL)", "Enhancing (mL)", "Oedema (mL)", "AI prob."]
    rows: list[list[Any]] = [[_t(h, "cellbold") for h in head]]
    for les in lesions:
        rows.append(
            [
                _t(str(les.index)),
                _t(location_text(les) + (f"; {les.satellites} satellite(s)" if les.satellites else "")),
                _t(f"{_num(les.max_axial_diameter_mm, 0)} × {_num(les.perpendicular_axial_diameter_mm, 0)}"),
                _t(_num(core_ml(les), 1)),
                _t(_num(les.enhancing_ml, 1) if les.enhancing_ml is not None else "—"),
                _t(_num(les.oedema_ml, 1) if les.oedema_ml is not None else "—"),
                _t(_num(les.probability, 2) if les.probability is not None else "—"),
            ]
        )
    w = [13 * mm, 0.0, 27 * mm, 18 * mm, 25 * mm, 22 * mm, 16 * mm]
    w[1] = width - sum(w)
    return [Spacer(1, 3), _table(rows, w, extra=[("ALIGN", (2, 1), (-1, -1), "RIGHT")])]


def _clinical(r: Report, width: float) -> list[Any]:
    n = r.narrative
    out: list[Any] = [
        _heading("Clinical information"),
        _t(n.clinical_information.strip() or "Not provided.", "body"),
        _heading("Technique"),
        _t(_technique(r), "body"),
        _heading("Comparison"),
        _t(_comparison(r), "body"),
        _heading("Findings"),
        _t(n.findings_text, "body"),
        *_lesion_table(r, width),
        _heading("Impression"),
        _p(f"<b>{esc(n.impression)}</b>", "body"),
    ]
    if n.radiologist_comment.strip():
        out += [_p("Radiologist comment", "h3"), _t(n.radiologist_comment, "body")]
    if r.recommendations:
        out.append(_p("Recommendations (AI-generated suggestions)", "h3"))
        for rec in r.recommendations:
            out.append(_p(f"• <b>[{esc(rec.urgency.upper())}]</b> {esc(rec.text)}", "cell"))
    return out


def signature_manifestation(r: Report) -> str:
    """The signature as every output states it (21 CFR 11.50): printed name, date and time, meaning."""
    return r.signature.manifestation() if r.signature is not None else "Not signed."


def _signature_block(r: Report, width: float) -> list[Any]:
    sig = r.signature
    if sig is not None:
        body: list[Any] = [
            _p(f"<b>Electronically signed by {esc(sig.signed_by)} ({esc(sig.role)})</b>"),
            _p(f"Date and time: {esc(_when(sig.signed_at))}", "cell"),
            _p(f"Meaning of the signature: {esc(sig.meaning)}", "cell"),
        ]
        if sig.reauthenticated_by:
            body.append(
                _p(f"Identity confirmed at signing by {esc(sig.reauthenticated_by.replace('+', ' and '))}.", "small")
            )
    else:
        waiting = {
            "preliminary": "Not signed — DRAFT: preliminary AI result, not reviewed.",
            "reviewed": "Not signed — DRAFT: reviewed, awaiting the radiologist's signature.",
            "amended": "Not signed — DRAFT: amendment awaiting the radiologist's signature.",
        }.get(r.status, "Not signed — DRAFT.")
        body = [_p(f"<b>{esc(waiting)}</b>")]
    box = Table(
        [[body]],
        colWidths=[width],
        style=TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 1.0, colors.black),
                ("LEFTPADDING", (0, 0), (-1, -1), 6),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        ),
    )
    return [KeepTogether([_heading("Signature"), box])]


def _appendix_heading(letter: str, text: str) -> Paragraph:
    return _heading(f"Appendix {letter}. {text}")


def _measurements(r: Report, width: float) -> list[Any]:
    rows: list[list[Any]] = [[_t(h, "cellbold") for h in ("Measurement", "Value", "Unit")]]
    for m in r.measurements:
        value, unit = measurement_text(m.value, m.unit, m.key)
        rows.append([_t(m.label), _t(value), _t(unit)])
    w = [width * 0.64, width * 0.18]
    extra = [("ALIGN", (1, 1), (1, -1), "RIGHT")]
    return [
        _appendix_heading("A", "AI measurements"),
        _p(
            "Every number of the structured outputs (DICOM SR, FHIR, HL7), computed by the AI; lesion diameters "
            "are those of the tumour core, oedema is reported apart.",
            "small",
        ),
        _table(rows, [*w, width - sum(w)], extra=extra),
    ]


def _ai_findings(r: Report, width: float) -> list[Any]:
    p = r.ai_findings.primary_detection
    s = r.ai_findings.secondary_findings
    if p.classification is not None:
        conf = f" (confidence {p.classification_confidence:.2f})" if p.classification_confidence is not None else ""
        classification = f"{p.classification}{conf}"
    else:
        classification = "not applicable"
    probs = ", ".join(f"{k} {v:.2f}" for k, v in p.class_probabilities.items())
    primary: list[tuple[str, Any]] = [
        ("Tumour detected", "yes" if p.detected else "no"),
        ("Probability", f"{p.probability:.2f} (threshold {p.threshold:.2f})"),
        ("Location of the largest lesion", p.location or "not applicable"),
        ("Largest core diameter", f"{p.size_mm:.1f} mm" if p.size_mm is not None else "not applicable"),
        ("Whole tumour volume (with oedema)", f"{p.volume_ml:.2f} mL"),
        ("Lesion count", str(p.lesion_count)),
        ("Classification", classification),
        ("Class probabilities", probs or "none"),
    ]
    shift_dir = ""
    if abs(s.midline_shift_mm) >= 0.05:
        shift_dir = f" towards the patient's {'right' if s.midline_shift_mm > 0 else 'left'}"
    secondary: list[tuple[str, Any]] = [
        ("Oedema", f"present, {s.oedema_ml:.2f} mL" if s.oedema_present else f"not present ({s.oedema_ml:.2f} mL)"),
        ("Midline shift", f"{_num(abs(s.midline_shift_mm), 1)} mm{shift_dir}; measured at {s.midline_shift_level}"),
        (
            "Ventricular status",
            f"{s.ventricular_status}: {s.ventricles_ml:.1f} mL, asymmetry index {_num(s.ventricular_asymmetry, 3)}",
        ),
        ("Haemorrhage", f"suspected, {s.haemorrhage_ml:.2f} mL" if s.haemorrhage_suspected else "not suspected"),
    ]
    review = [[_t("Structure", "cellbold"), _t("AI statement", "cellbold")]]
    review += [[_t(item.structure), _t(item.statement)] for item in r.ai_findings.anatomical_review]
    return [
        _appendix_heading("B", "AI detection, classification and secondary findings"),
        _key_value(primary, width),
        Spacer(1, 4),
        _key_value(secondary, width),
        _p("Anatomical review", "h3"),
        _table(review, [45 * mm, width - 45 * mm]),
    ]


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from the PNG header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    w, h = struct.unpack(">II", png[16:24])
    return int(w), int(h)


def _legend(width: float) -> Table:
    cells: list[Any] = []
    extra: list[tuple[Any, ...]] = []
    for n, (value, rgb) in enumerate(sorted(LABEL_COLOURS.items())):
        colour = colors.Color(rgb[0] / 255, rgb[1] / 255, rgb[2] / 255)
        extra.append(("BACKGROUND", (2 * n, 0), (2 * n, 0), colour))
        cells += ["", _t(f"{LABEL_NAMES.get(value, str(value))} (label {value})", "legend")]
    swatch = 4 * mm
    label_w = (width * 0.75 - swatch * len(LABEL_COLOURS)) / len(LABEL_COLOURS)
    widths = [swatch, label_w] * len(LABEL_COLOURS)
    extra += [("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("BOX", (0, 0), (0, 0), 0.3, colors.black)]
    return Table([cells], colWidths=widths, rowHeights=[swatch + 2], style=TableStyle(extra), hAlign="LEFT")


def _key_images(r: Report, images: AnalysisImages | None, width: float) -> list[Any]:
    head = _heading("Key images")
    ks = r.visual_data.key_slices
    if images is None or ks is None:
        why = "the analysis images were not given" if images is None else "no key slices were recorded"
        return [head, _p(f"Key images are not available for this report ({why}).")]
    figs = key_images(images, ks.centre_ras_mm)
    gap = 6 * mm
    cell_w = (width - gap) / 2
    cells: list[Any] = []
    for fig in figs:
        w_px, h_px = _png_size(fig.png)
        scale = min(cell_w / w_px, 80 * mm / h_px)
        img = Image(io.BytesIO(fig.png), width=w_px * scale, height=h_px * scale)
        cells.append([img, Spacer(1, 2), _t(fig.caption, "caption")])
    rows: list[list[Any]] = [cells[i : i + 2] for i in range(0, len(cells), 2)]
    if len(rows[-1]) == 1:
        rows[-1].append("")
    grid = Table(
        rows,
        colWidths=[cell_w + gap / 2] * 2,
        style=TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        ),
    )
    c = ks.centre_ras_mm
    intro = _p(
        f"Slices through the {esc(ks.through)} at RAS ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm. Radiological "
        "convention: the patient's right is on the image left (axial, coronal); anterior is on the left "
        "(sagittal).",
        "small",
    )
    heat = _p(
        f"Heatmap: tumour probability of the model ensemble, shown from {HEATMAP_FLOOR:.1f} upwards "
        "(yellow = lower → red = higher).",
        "small",
    )
    return [KeepTogether([head, intro, Spacer(1, 4), grid, _legend(width), Spacer(1, 2), heat])]


def _coordinates(r: Report, width: float) -> list[Any]:
    v = r.visual_data
    out: list[Any] = [_appendix_heading("D", "Lesion coordinates and slice annotations")]

    def vec(value: object) -> str:
        if isinstance(value, list | tuple) and len(value) == 3 and all(isinstance(x, int | float) for x in value):
            return f"({value[0]:.1f}, {value[1]:.1f}, {value[2]:.1f})"
        return "—" if value is None else str(value)

    if v.coordinates_3d:
        rows: list[list[Any]] = [
            [_t(h, "cellbold") for h in ("Lesion", "Centroid, scanner RAS (mm)", "Centroid, MNI (mm)")]
        ]
        for item in v.coordinates_3d:
            rows.append(
                [
                    _t(item.get("lesion", "—")),
                    _t(vec(item.get("centroid_ras_mm"))),
                    _t(vec(item.get("centroid_mni_mm"))),
                ]
            )
        out.append(_table(rows, [20 * mm, (width - 20 * mm) / 2, (width - 20 * mm) / 2]))
    else:
        out.append(_p("No lesion coordinates (no lesion segmented)."))
    if v.slice_annotations:
        rows = [[_t(h, "cellbold") for h in ("Plane", "Slice", "Annotation")]]
        rows += [[_t(a.plane), _t(a.index), _t(a.text)] for a in v.slice_annotations]
        out += [Spacer(1, 4), _table(rows, [22 * mm, 16 * mm, width - 38 * mm])]
        out.append(_p(f"Slice numbers are voxel indices of {esc(v.segmentation_file)}.", "small"))
    return out


def _change(r: Report, width: float) -> list[Any]:
    c = r.change_versus_prior
    if c is None:
        return []
    rows: list[list[Any]] = [
        [_t(h, "cellbold") for h in ("Region", "Prior (mL)", "Current (mL)", "Change (%)")],
    ]
    for row in c.rows:
        prior = f"{row.prior_ml:.2f}" if row.prior_ml is not None else "—"
        change = f"{row.change_percent:+.1f}" if row.change_percent is not None else "n/a (prior 0)"
        rows.append([_t(row.label), _t(prior), _t(f"{row.current_ml:.2f}"), _t(change)])
    w = (width - 70 * mm) / 3
    pairs: list[tuple[str, Any]] = [
        ("Prior study", c.prior_study),
        ("Prior date", _date(c.prior_date)),
        ("RANO category", c.rano_category.replace("_", " ")),
        ("Rule", c.rule),
    ]
    extra = [("ALIGN", (1, 1), (-1, -1), "RIGHT")]
    return [
        _appendix_heading("C", "Change versus prior study"),
        _key_value(pairs, width),
        Spacer(1, 4),
        _table(rows, [70 * mm, w, w, w], extra=extra),
    ]


def _recommendations(r: Report, width: float) -> list[Any]:
    out: list[Any] = [_appendix_heading("F", "Recommendation rules")]
    if not r.recommendations:
        return [*out, _p("No recommendation.")]
    for rec in r.recommendations:
        rests = "; ".join(rec.rests_on) or "—"
        body = [
            _p(f"<b>[{esc(rec.urgency.upper())}]</b> {esc(rec.text)}", "cell"),
            _p(f"<i>{esc(rec.label)}</i> · rule {esc(rec.rule_id)} · rests on: {esc(rests)}", "small"),
        ]
        out += [_table([[body]], [width], header=False), Spacer(1, 3)]
    return out


def _disclaimers(r: Report) -> list[Any]:
    return [_appendix_heading("I", "Disclaimers"), *(_t(f"• {d}", "body") for d in r.notices)]


def _edits(r: Report, width: float) -> list[Any]:
    if not r.edits:
        return []
    rows: list[list[Any]] = [[_t(h, "cellbold") for h in ("When", "Who (role)", "Field", "New value")]]
    for e in r.edits:
        new = e.new if isinstance(e.new, str) else repr(e.new)
        if len(new) > MAX_EDIT_VALUE:
            new = new[: MAX_EDIT_VALUE - 1] + "…"
        rows.append([_t(_when(e.when)), _t(f"{e.who} ({e.role})"), _t(e.path, "small"), _t(new, "small")])
    w = [34 * mm, 34 * mm, 44 * mm]
    return [_appendix_heading("G", "Edit history"), _table(rows, [*w, width - sum(w)])]


def _verification(r: Report, width: float) -> list[Any]:
    sig = r.signature
    head = _appendix_heading("H", "Signature verification")
    if sig is None:
        return [head, _p("Not signed: there is no signature to verify.")]
    from neuronav.report.lifecycle import verify_signature

    check = (
        "the hash matches the content of this report"
        if verify_signature(r)
        else "<b>WARNING: the content differs from what was signed</b>"
    )
    return [
        head,
        _p(esc(signature_manifestation(r)), "cell"),
        Spacer(1, 3),
        _p("Content SHA-256:", "cell"),
        _t(sig.content_sha256, "mono"),
        Spacer(1, 2),
        _p(f"SHA-256 of the canonical JSON of this report version without its signature block; {check}.", "small"),
    ]


def _provenance(r: Report, width: float) -> list[Any]:
    s = r.study_info
    models = "<br/>".join(
        f"{esc(m.name)} {esc(m.version)} ({esc(m.kind)}"
        + (f", sha256 <font name='Courier'>{esc(m.sha256[:12])}</font>…" if m.sha256 else "")
        + ")"
        for m in s.models
    )
    atlases = sorted({les.location.atlas for les in r.findings.segmentation.lesions})
    pairs: list[tuple[str, Any]] = [
        ("Received", s.upload_date),
        ("Scan type", s.scan_type),
        ("Patient pseudonym", s.patient_pseudonym or "not recorded"),
        ("Study instance UID", s.study_instance_uid or "not recorded"),
        ("Reference series", f"{s.reference_sequence} ({s.input_kind}), UID {s.reference_series_uid or 'none'}"),
        ("Models and algorithms", _p(models or "none recorded", "cell")),
        ("Anatomical atlas", "; ".join(atlases) or "not used"),
        ("Processing time", f"{s.processing_time_s:.1f} s"),
        ("Overall confidence", _overall_confidence(r)),
    ]
    return [_appendix_heading("E", "Provenance"), _key_value(pairs, width)]


def _overall_confidence(r: Report) -> str:
    """The value with the algorithm that computed it (neuronav.analysis.confidence), which is not a probability."""
    value = f"{r.study_info.overall_confidence:.2f}"
    algo = r.findings.overall_confidence_produced_by
    if algo is None:  # findings written before the algorithm was recorded
        return value
    return f"{value} ({algo.name} {algo.version}: a summary of the models' own certainty, not a calibrated probability)"


# --- page decoration --------------------------------------------------------------------------------


class _PagedCanvas(Canvas):  # type: ignore[misc]
    """Draws header and footer on every page once the page count is known ("Page i of n")."""

    def __init__(self, *args: Any, report: Report, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._report = report
        self._page_states: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802 (reportlab's name)
        self._page_states.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._page_states)
        for state in self._page_states:
            self.__dict__.update(state)
            self._decorate(total)
            super().showPage()
        super().save()

    def _decorate(self, total: int) -> None:
        r = self._report
        w, h = self._pagesize
        signed = r.signature is not None
        status = r.status.upper() if signed else f"{r.status.upper()} · {DRAFT}"
        colour = STATUS_COLOURS.get(r.status, colors.black)
        self.saveState()
        if not signed:  # an image, not text: the words of the page read in order around it
            size = min(w, h) * 0.9
            self.drawImage(_watermark(), (w - size) / 2, (h - size) / 2, size, size, mask="auto")
        # header: the patient and the report on the left, the status badge on the right
        y = h - 12 * mm
        self.setFillColor(colors.black)
        self.setFont("Helvetica-Bold", 9)
        self.drawString(MARGIN, y, identity_line(r))
        self.setFont("Helvetica", 8)
        self.drawString(MARGIN, y - 10, f"{TITLE} · {r.report_id} · version {r.version}")
        self.setFont("Helvetica-Bold", 11)
        badge_w = self.stringWidth(status, "Helvetica-Bold", 11) + 12
        x = w - MARGIN - badge_w
        self.setStrokeColor(colour)
        self.setLineWidth(1.5)
        self.rect(x, y - 8, badge_w, 18, stroke=1, fill=0)
        self.setFillColor(colour)
        self.drawString(x + 6, y - 3, status)
        self.setStrokeColor(GRID)
        self.setLineWidth(0.5)
        self.line(MARGIN, h - TOP_MARGIN + 4 * mm, w - MARGIN, h - TOP_MARGIN + 4 * mm)
        # footer: not for clinical use, status, page numbers
        self.line(MARGIN, BOTTOM_MARGIN - 5 * mm, w - MARGIN, BOTTOM_MARGIN - 5 * mm)
        self.setFillColor(colors.black)
        self.setFont("Helvetica-Bold", 7.5)
        self.drawString(MARGIN, BOTTOM_MARGIN - 9 * mm, NOT_FOR_CLINICAL_USE)
        self.setFont("Helvetica", 7.5)
        self.drawRightString(w - MARGIN, BOTTOM_MARGIN - 9 * mm, f"{status} · Page {self._pageNumber} of {total}")
        self.restoreState()


@functools.lru_cache(maxsize=1)
def _watermark() -> ImageReader:
    """The diagonal DRAFT mark: a square RGBA image (light red at :data:`WATERMARK_ALPHA`), drawn from
    the Bitstream Vera Bold font reportlab ships; made once, the same pixels every time."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    side = 1200
    font = ImageFont.truetype(str(Path(reportlab.__file__).with_name("fonts") / "VeraBd.ttf"), 290)
    text = PILImage.new("L", (side, side), 0)
    draw = ImageDraw.Draw(text)
    draw.text((side / 2, side / 2), DRAFT, font=font, fill=255, anchor="mm")
    alpha = text.rotate(45, resample=PILImage.Resampling.BICUBIC)
    alpha = alpha.point(lambda v: int(v * WATERMARK_ALPHA))
    rgb = tuple(round(c * 255) for c in WATERMARK_RGB)
    img = PILImage.new("RGBA", (side, side), (*rgb, 0))
    img.putalpha(alpha)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return ImageReader(io.BytesIO(buf.getvalue()))


def _pdf_date(dt: datetime) -> str:
    d = dt.astimezone(UTC) if dt.tzinfo is not None else dt
    return f"D:{d:%Y%m%d%H%M%S}+00'00'"


def render_pdf(report: Report, images: AnalysisImages | None, *, paper: Literal["A4", "Letter"] = "A4") -> bytes:
    """The PDF of ``report``; key images from ``images`` (the analysis images) when given."""
    if paper not in PAGE_SIZES:
        raise ValueError(f"paper must be A4 or Letter, not {paper!r}")
    pagesize = PAGE_SIZES[paper]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=pagesize,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=TOP_MARGIN,
        bottomMargin=BOTTOM_MARGIN,
        title=report.report_id,
        author="NeuroNav",
        subject=f"AI analysis report of a brain MRI study, status {report.status}, version {report.version}",
        creator=f"NeuroNav {__version__}",
        keywords=["NeuroNav", "brain MRI", "AI", report.status, "not for clinical use"],
        invariant=True,
        lang="en",
    )
    width = doc.width
    story: list[Any] = [
        _p(esc(f"MRI Brain — {TITLE}"), "title"),
        Spacer(1, 3),
        *_identity_block(report, width),
        Spacer(1, 3),
        *_status_line(report),
        *_clinical(report, width),
        *_signature_block(report, width),
        PageBreak(),
        *_key_images(report, images, width),
        PageBreak(),
        *_measurements(report, width),
        *_ai_findings(report, width),
        *_change(report, width),
        *_coordinates(report, width),
        *_provenance(report, width),
        *_recommendations(report, width),
        *_edits(report, width),
        *_verification(report, width),
        *_disclaimers(report),
    ]
    created = _pdf_date(report.created)

    def canvasmaker(*args: Any, **kwargs: Any) -> _PagedCanvas:
        canv = _PagedCanvas(*args, report=report, **kwargs)
        canv.setDateFormatter(lambda *_: created)  # PDF dates: the report's, not the render time
        return canv

    # ASCII85 on top of Flate only makes binary streams 25 % larger, and without reportlab's C
    # accelerator it is most of the render time; streams are plain Flate (valid PDF either way).
    a85 = rl_config.useA85
    rl_config.useA85 = 0
    try:
        doc.build(story, canvasmaker=canvasmaker)
    finally:
        rl_config.useA85 = a85
    return buf.getvalue()


__all__ = [
    "DRAFT",
    "PAGE_SIZES",
    "WATERMARK_ALPHA",
    "WATERMARK_RGB",
    "Paper",
    "esc",
    "identity_line",
    "measurement_text",
    "render_pdf",
    "signature_manifestation",
]
