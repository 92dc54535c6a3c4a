"""The PDF report: extractable text of every section, status and warning on every page, paper sizes,
metadata, key images really drawn, signature block, hostile user text, change versus prior.

Text is read back with poppler's ``pdftotext``, pages are rasterised with ``pdftoppm`` and the page
size and metadata are read with ``pdfinfo`` (all three fail the test, never skip, when missing).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neuronav.findings import Change
from neuronav.report.build import build_report
from neuronav.report.figures import AnalysisImages, load_analysis_images
from neuronav.report.lifecycle import edit, sign
from neuronav.report.model import Patient, Report
from neuronav.report.pdf import Paper, render_pdf
from tests.conftest import require_binary
from tests.report.conftest import Analysed

HOSTILE = "<b>x</b> & <script>"


@pytest.fixture(scope="module")
def images(analysed: Analysed) -> AnalysisImages:
    return load_analysis_images(analysed.analysis_dir)


def _write(pdf: bytes, tmp_path: Path, name: str = "report.pdf") -> Path:
    assert pdf.startswith(b"%PDF-")
    path = tmp_path / name
    path.write_bytes(pdf)
    return path


def pdf_text(pdf: bytes, tmp_path: Path, page: int | None = None) -> str:
    path = _write(pdf, tmp_path)
    pages = ["-f", str(page), "-l", str(page)] if page is not None else []
    out = subprocess.run(
        [require_binary("pdftotext"), "-enc", "UTF-8", *pages, str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def flat(text: str) -> str:
    """Whitespace collapsed: a phrase wrapped over two lines is found again."""
    return " ".join(text.split())


def pdf_info(pdf: bytes, tmp_path: Path) -> dict[str, str]:
    path = _write(pdf, tmp_path)
    out = subprocess.run([require_binary("pdfinfo"), str(path)], capture_output=True, text=True, check=True)
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.stdout.splitlines())}


def page_images(pdf: bytes, tmp_path: Path, dpi: int = 72) -> list[np.ndarray]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = _write(pdf, tmp_path)
    subprocess.run(
        [require_binary("pdftoppm"), "-r", str(dpi), "-png", str(path), str(tmp_path / "page")],
        check=True,
        capture_output=True,
    )
    files = sorted(tmp_path.glob("page-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return [np.asarray(Image.open(f).convert("RGB"), dtype=np.int32) for f in files]


def overlay_pixels(rgb: np.ndarray) -> dict[str, int]:
    """Pixels clearly red, green or yellow: the segmentation colours blended at 45 % over grey (and the
    heatmap's reds and yellows). The dark status badge and its anti-aliased edges match none of them."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return {
        "red": int(((r > 120) & (r - g > 50) & (r - b > 50)).sum()),
        "green": int(((g > 100) & (g - r > 40) & (g - b > 30)).sum()),
        "yellow": int(((r > 150) & (g > 0.85 * r) & (b < g - 60)).sum()),
    }


def watermark_pixels(rgb: np.ndarray) -> int:
    """Pixels of the DRAFT watermark: its light red over white (about RGB 248, 218, 218). Grey text,
    the dark status badge and the key images' overlay colours match none of them."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r >= 235) & (r - g >= 15) & (r - g <= 60) & (np.abs(g - b) <= 8)).sum())


def test_page_one_is_the_clinical_report_and_the_ai_detail_is_in_the_appendix(
    report: Report, images: AnalysisImages, tmp_path: Path
) -> None:
    pdf = render_pdf(report, images)
    page1 = flat(pdf_text(pdf, tmp_path, page=1))
    order = ["Clinical information", "Technique", "Comparison", "Findings", "Impression", "Signature"]
    positions = [page1.index(heading) for heading in order]
    assert positions == sorted(positions), page1
    assert flat(report.narrative.impression) in page1
    assert "Comparison None." in page1
    for seq in report.study_info.sequences_used:
        assert seq in page1.split("Technique", 1)[1].split("Comparison", 1)[0]
    lesion = report.findings.segmentation.lesions[0]
    primary = report.ai_findings.primary_detection
    assert primary.location and primary.location in page1  # "left parietal lobe (…)": plain words
    assert f"{lesion.max_axial_diameter_mm:.0f} × {lesion.perpendicular_axial_diameter_mm:.0f}" in page1
    assert "Not signed" in page1 and "PRELIMINARY" in page1
    # nothing of the machinery on page 1: no UIDs, model hashes, JSON pointers or atlas codes
    assert report.study_info.study_instance_uid and report.study_info.study_instance_uid not in page1
    for model in report.study_info.models:
        assert not model.sha256 or model.sha256[:12] not in page1
    assert "/segmentation/" not in page1 and "AAL2" not in page1
    whole = flat(pdf_text(pdf, tmp_path))
    appendix = whole[whole.index("Appendix A. AI measurements") :]
    for heading in ("Appendix B.", "Appendix D.", "Appendix E. Provenance", "Appendix F.", "Appendix I. Disclaimers"):
        assert heading in appendix
    assert whole.index("Key images") < whole.index("Appendix A.")
    assert report.study_info.study_instance_uid in appendix
    for model in report.study_info.models:
        assert model.name in appendix
    for rec in report.recommendations:
        assert flat(rec.text) in page1
    for disclaimer in report.disclaimers:
        assert disclaimer in whole
    assert "/segmentation/" not in appendix.split("Appendix B.", 1)[0]  # the measurement table has no pointers


def test_page_one_names_the_patient_before_the_findings_and_every_page_repeats_it(
    report: Report, tmp_path: Path
) -> None:
    patient = Patient(
        name="MÜLLER^Anna^Maria^Dr",
        mrn="MRN-0042",
        mrn_issuer="ST-MARY",
        birth_date="19700312",
        sex="F",
        accession_number="ACC7781",
        referring_physician="HOUSE^Gregory",
    )
    pdf = render_pdf(report.identified(patient), None)
    page1 = flat(pdf_text(pdf, tmp_path, page=1))
    for label, value in (
        ("Patient name", "MÜLLER, Dr Anna Maria"),
        ("MRN", "MRN-0042 (ST-MARY)"),
        ("Birth date", "1970-03-12"),
        ("Sex", "female"),
        ("Accession number", "ACC7781"),
        ("Referring physician", "HOUSE, Gregory"),
        ("Study date", "2024-02-23"),
    ):
        assert f"{label} {value}" in page1, label
    assert page1.index("Patient name") < page1.index("Findings") < page1.index("Impression")
    pages = int(pdf_info(pdf, tmp_path)["Pages"])
    for n in range(1, pages + 1):
        assert "MÜLLER, Dr Anna Maria · MRN MRN-0042 · born 1970-03-12" in pdf_text(pdf, tmp_path, page=n)
    pseudonymous = flat(pdf_text(render_pdf(report, None), tmp_path, page=1))
    assert "pseudonymous output" in pseudonymous and "MÜLLER" not in pseudonymous


def test_units_are_printed_as_a_radiologist_reads_them(report: Report, tmp_path: Path) -> None:
    shift = report.findings.midline_shift.model_copy(update={"shift_mm": -0.04, "magnitude_mm": 0.04})
    v = report.findings.ventricles.model_copy(update={"asymmetry": -0.0001})
    findings = report.findings.model_copy(update={"midline_shift": shift, "ventricles": v})
    r = build_report(findings)
    text = flat(pdf_text(render_pdf(r, None), tmp_path))
    table = text[text.index("Appendix A. AI measurements") : text.index("Appendix B.")]
    assert "-0.0" not in text
    assert "mm²" in table and "mm2" not in table
    probability = next(m for m in r.measurements if m.key == "tumour_probability")
    assert re.search(rf"Tumour probability {probability.value:.2f}(?! 1\b)", table), table
    assert not re.search(r"\d 1 [A-Z]", table), table  # no "1" printed as the unit of a ratio
    assert "Midline shift (signed, + towards the patient's right) 0.0 mm" in table


def test_drafts_carry_a_watermark_on_every_page_and_a_signed_report_none(
    report: Report, images: AnalysisImages, tmp_path: Path
) -> None:
    draft = page_images(render_pdf(report, images), tmp_path / "draft")
    assert len(draft) >= 3
    assert all(watermark_pixels(page) > 1500 for page in draft), [watermark_pixels(p) for p in draft]
    signed = sign(report, who="Dr Test", role="radiologist")
    final_pages = page_images(render_pdf(signed, images), tmp_path / "final")
    assert [watermark_pixels(page) for page in final_pages] == [0] * len(final_pages)
    first = pdf_text(render_pdf(report, None), tmp_path, page=1)
    assert "DRAFT" in first  # said in words too, in the header badge
    assert "DRAFT" not in pdf_text(render_pdf(signed, None), tmp_path)


def test_every_page_shows_status_page_number_and_not_for_clinical_use(
    report: Report, images: AnalysisImages, tmp_path: Path
) -> None:
    pdf = render_pdf(report, images)
    pages = int(pdf_info(pdf, tmp_path)["Pages"])
    assert pages >= 2
    for n in range(1, pages + 1):
        text = pdf_text(pdf, tmp_path, page=n)
        assert "PRELIMINARY" in text
        assert "not for clinical use" in text.lower()
        assert report.report_id in text
        assert f"Page {n} of {pages}" in text


@pytest.mark.parametrize(("paper", "size"), [("A4", (595.3, 841.9)), ("Letter", (612.0, 792.0))])
def test_paper_size(
    report: Report, images: AnalysisImages, tmp_path: Path, paper: Paper, size: tuple[float, ...]
) -> None:
    info = pdf_info(render_pdf(report, images, paper=paper), tmp_path)
    m = re.match(r"([\d.]+) x ([\d.]+) pts", info["Page size"])
    assert m is not None, info["Page size"]
    assert (float(m.group(1)), float(m.group(2))) == pytest.approx(size, abs=0.2)


def test_metadata(report: Report, tmp_path: Path) -> None:
    info = pdf_info(render_pdf(report, None), tmp_path)
    assert info["Title"] == report.report_id
    assert info["Author"] == "NeuroNav"
    assert "preliminary" in info["Subject"] and f"version {report.version}" in info["Subject"]


def test_key_images_are_drawn_with_the_overlay_colours(report: Report, images: AnalysisImages, tmp_path: Path) -> None:
    pdf = render_pdf(report, images)
    rendered = page_images(pdf, tmp_path / "with")
    texts = [pdf_text(pdf, tmp_path, page=n) for n in range(1, len(rendered) + 1)]
    (page,) = [n for n, t in enumerate(texts) if "segmentation overlay" in t]
    assert "tumour probability heatmap" in texts[page]
    counts = overlay_pixels(rendered[page])
    # the phantom tumour has all three labels; each covers far more than its legend swatch (~120 px at 72 dpi)
    assert min(counts.values()) > 400, counts
    # without the images nothing on any page has those colours (the header badge does not count)
    plain = page_images(render_pdf(report, None), tmp_path / "without")
    assert all(sum(overlay_pixels(p).values()) == 0 for p in plain)


def test_without_images_says_key_images_not_available(report: Report, tmp_path: Path) -> None:
    text = flat(pdf_text(render_pdf(report, None), tmp_path))
    assert "Key images are not available" in text
    no_slices = report.model_copy(update={"visual_data": report.visual_data.model_copy(update={"key_slices": None})})
    assert "Key images are not available" in flat(pdf_text(render_pdf(no_slices, None), tmp_path))


def test_key_slices_missing_but_images_given(report: Report, images: AnalysisImages, tmp_path: Path) -> None:
    no_slices = report.model_copy(update={"visual_data": report.visual_data.model_copy(update={"key_slices": None})})
    assert "Key images are not available" in flat(pdf_text(render_pdf(no_slices, images), tmp_path))


def test_signed_report_shows_the_signature_manifestation_and_full_content_hash(report: Report, tmp_path: Path) -> None:
    signed = sign(report, who="Dr Test", role="radiologist", reauthenticated_by="password")
    assert signed.signature is not None
    pdf = render_pdf(signed, None)
    text = pdf_text(pdf, tmp_path)
    assert signed.signature.content_sha256 in text  # all 64 hex digits on one line
    page1 = flat(pdf_text(pdf, tmp_path, page=1))
    when = signed.signature.signed_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert "Electronically signed by Dr Test (radiologist)" in page1
    assert f"Date and time: {when}" in page1
    assert f"Meaning of the signature: {signed.signature.meaning}" in page1
    assert "the hash matches the content of this report" in flat(text)
    assert "FINAL" in text
    assert "Not signed" not in text


def test_an_amendment_states_its_reason_on_page_one(report: Report, tmp_path: Path) -> None:
    from neuronav.report.lifecycle import amend

    v2 = amend(sign(report, who="Dr A", role="radiologist"), who="Dr A", role="radiologist", reason="side corrected")
    page1 = flat(pdf_text(render_pdf(v2, None), tmp_path, page=1))
    assert "Amended report: replaces version 1. Reason for the amendment: side corrected" in page1
    assert "AMENDED" in page1


def test_hostile_narrative_text_renders_literally(report: Report, tmp_path: Path) -> None:
    edited = edit(
        report,
        {"/narrative/impression": HOSTILE, "/narrative/radiologist_comment": "</para> ]]> a\x00b\nnext line"},
        who="Dr <Test> & Co",
        role="radiologist",
    )
    text = pdf_text(render_pdf(edited, None), tmp_path)
    assert HOSTILE in text
    assert "</para> ]]> ab" in text and "next line" in text
    assert "PRELIMINARY" in text  # an edit moves no status
    flat_text = flat(text)
    assert "Edit history" in flat_text and "Dr <Test> & Co (radiologist)" in flat_text
    assert "/narrative/impression" in flat_text


def test_change_versus_prior_table(analysed: Analysed, tmp_path: Path) -> None:
    change = Change(
        prior_study="2.25.1234",
        prior_date="20231101",
        volume_change_percent={"whole_tumour_ml": 35.2, "enhancing_ml": None},
        prior_volumes_ml={"whole_tumour_ml": 20.07, "enhancing_ml": 0.0},
        rano_category="progression",
        rule="increase of 25 % or more in the sum of products of perpendicular diameters",
    )
    findings = analysed.findings.model_copy(update={"change": change})
    report = build_report(findings, analysis_dir=analysed.analysis_dir)
    assert report.change_versus_prior is not None
    text = flat(pdf_text(render_pdf(report, None, paper="Letter"), tmp_path))
    assert "Comparison Prior MRI of 2023-11-01: progression" in text
    section = text[text.index("Appendix C. Change versus prior study") :]
    assert "2.25.1234" in section and "2023-11-01" in section
    assert "progression" in section and change.rule in section
    assert "Whole tumour volume 20.07 27.14 +35.2" in section
    assert "Enhancing tumour volume 0.00" in section and "n/a (prior 0)" in section


def test_no_change_table_without_prior(report: Report, tmp_path: Path) -> None:
    assert report.change_versus_prior is None
    assert "Change versus prior" not in pdf_text(render_pdf(report, None), tmp_path)


def test_same_report_same_bytes(report: Report, images: AnalysisImages) -> None:
    assert render_pdf(report, images) == render_pdf(report, images)


def test_unknown_paper_is_refused(report: Report) -> None:
    with pytest.raises(ValueError, match="A4 or Letter"):
        render_pdf(report, None, paper="A3")  # type: ignore[arg-type]
