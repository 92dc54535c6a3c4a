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
from neuronav.report.model import Report
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


def test_text_has_id_status_numbers_location_recommendations_and_disclaimers(
    report: Report, images: AnalysisImages, tmp_path: Path
) -> None:
    text = flat(pdf_text(render_pdf(report, images), tmp_path))
    assert "NeuroNav AI analysis report" in text
    assert report.report_id in text
    assert "PRELIMINARY" in text
    primary = report.ai_findings.primary_detection
    assert primary.detected and primary.location
    assert f"{primary.volume_ml:.2f} mL" in text
    whole = next(m for m in report.measurements if m.key == "whole_tumour_volume")
    assert f"Whole tumour volume {whole.value:g} mL" in text  # the measurements row
    assert primary.location in text
    assert report.study_info.study_instance_uid and report.study_info.study_instance_uid in text
    assert report.study_info.patient_pseudonym and report.study_info.patient_pseudonym in text
    for model in report.study_info.models:
        assert model.name in text
    assert report.recommendations
    for rec in report.recommendations:
        assert flat(rec.text) in text
    assert text.count("AI-generated suggestion") >= len(report.recommendations)
    for disclaimer in report.disclaimers:
        assert disclaimer in text
    assert "not for clinical use" in text.lower()
    assert flat(report.narrative.impression) in text
    assert "Not signed" in text
    order = [
        "Study",
        "AI findings",
        "Narrative",
        "Measurements",
        "Key images",
        "Lesion coordinates",
        "Recommendations",
        "Disclaimers",
        "Signature",
    ]
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)


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


def test_signed_report_shows_signer_and_full_content_hash(report: Report, tmp_path: Path) -> None:
    signed = sign(report, who="Dr Test", role="radiologist")
    assert signed.signature is not None
    text = pdf_text(render_pdf(signed, None), tmp_path)
    assert signed.signature.content_sha256 in text  # all 64 hex digits on one line
    assert "Electronically signed by Dr Test (radiologist) at" in flat(text)
    assert "the hash matches the content of this report" in flat(text)
    assert "FINAL" in text
    assert "Not signed" not in text


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
    assert "REVIEWED" in text
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
    section = text[text.index("Change versus prior study") :]
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
