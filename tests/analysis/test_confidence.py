"""Overall confidence: the documented, versioned algorithm, recorded in the findings and cited by the reports.

Also the classifier's class names, which come from its model card.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from neuronav.analysis import confidence
from neuronav.analysis.models import ModelCardError, parse_card, read_card
from neuronav.analysis.pipeline import tumour_classes
from neuronav.config import packaged_models_dir
from neuronav.findings import Findings
from neuronav.report.build import build_report
from neuronav.report.pdf import render_pdf
from neuronav.report.recommend import low_confidence
from tests.analysis.findings_factory import make_findings
from tests.conftest import require_binary


def test_the_formula_is_the_documented_product() -> None:
    value = confidence.overall_confidence(
        tumour_probability=0.9,
        tumour_detected=True,
        ensemble_uncertainty=0.1,
        sequences_used=3,
        class_probability=0.8,
    )
    detection, agreement, coverage, cls = 0.8, 0.9, 0.7 + 0.3 * 3 / 4, 0.8
    assert value == round(detection * agreement * coverage * cls, 4) == 0.5328


def test_without_a_tumour_only_detection_certainty_and_coverage_count() -> None:
    kwargs = {"tumour_probability": 0.02, "tumour_detected": False, "sequences_used": 4}
    a = confidence.overall_confidence(**kwargs, ensemble_uncertainty=0.9, class_probability=0.34)  # type: ignore[arg-type]
    b = confidence.overall_confidence(**kwargs, ensemble_uncertainty=0.0, class_probability=1.0)  # type: ignore[arg-type]
    assert a == b == 0.96


@pytest.mark.parametrize("p", [0.5, 0.49999])
def test_a_detector_at_its_threshold_gives_no_confidence(p: float) -> None:
    value = confidence.overall_confidence(
        tumour_probability=p,
        tumour_detected=p >= 0.5,
        ensemble_uncertainty=0.0,
        sequences_used=4,
        class_probability=1.0,
    )
    assert value == 0.0


def test_bad_sequence_count_is_refused() -> None:
    with pytest.raises(ValueError, match="sequences_used"):
        confidence.overall_confidence(
            tumour_probability=1.0, tumour_detected=True, ensemble_uncertainty=0, sequences_used=5, class_probability=1
        )


def test_provenance_names_the_algorithm_and_says_it_is_not_a_probability() -> None:
    pb = confidence.produced_by()
    assert (pb.name, pb.version, pb.kind, pb.sha256) == (confidence.ALGORITHM, confidence.VERSION, "algorithm", None)
    doc = confidence.__doc__ or ""
    assert "not a calibrated probability" in doc and confidence.ALGORITHM in doc


def _low(value: float = 0.3) -> Findings:
    return make_findings().model_copy(
        update={"overall_confidence": value, "overall_confidence_produced_by": confidence.produced_by()}
    )


def test_findings_without_the_algorithm_still_read() -> None:
    """Findings written before 1.2 (a prior study's) have no overall_confidence_produced_by."""
    old = make_findings().model_dump(mode="json")
    old.pop("overall_confidence_produced_by")
    assert Findings.model_validate(old).overall_confidence_produced_by is None


def test_the_recommendation_cites_the_algorithm() -> None:
    rec = low_confidence(_low())
    assert rec is not None
    assert f"{confidence.ALGORITHM} {confidence.VERSION}" in rec.text and "not a calibrated probability" in rec.text
    assert f"/overall_confidence_produced_by = {confidence.ALGORITHM} {confidence.VERSION}" in rec.rests_on
    assert low_confidence(_low(0.9)) is None


def test_the_pdf_shows_the_value_with_its_algorithm(tmp_path: Path) -> None:
    report = build_report(_low(0.42))
    assert confidence.ALGORITHM in [m.name for m in report.study_info.models]
    path = tmp_path / "report.pdf"
    path.write_bytes(render_pdf(report, None))
    text = " ".join(
        subprocess.run(
            [require_binary("pdftotext"), "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert f"Overall confidence 0.42 ({confidence.ALGORITHM} {confidence.VERSION}" in text
    assert "not a calibrated probability" in text


# ------------------------------------------------------------------------------- class labels


def test_the_shipped_classifier_names_its_classes_on_its_card() -> None:
    card = read_card(packaged_models_dir() / "tumour-classification" / "1.0.0" / "card.json")
    assert tumour_classes(card) == ("glioma", "meningioma", "metastasis")
    assert card.outputs[0].shape[-1] == len(card.class_names)


def _classifier(labels: dict[str, str], width: int | str = 3) -> dict[str, object]:
    card = read_card(packaged_models_dir() / "tumour-classification" / "1.0.0" / "card.json")
    data = card.model_dump(mode="json", exclude_none=True)
    data["labels"] = labels
    data["outputs"] = [{**data["outputs"][0], "shape": [1, width]}]
    return data


def test_the_class_order_is_the_cards() -> None:
    card = parse_card(_classifier({"0": "metastasis", "1": "glioma", "2": "meningioma"}))
    assert tumour_classes(card) == ("metastasis", "glioma", "meningioma")


@pytest.mark.parametrize(
    ("labels", "width", "problem"),
    [
        ({"0": "glioma", "1": "meningioma"}, 3, "must match the width"),
        ({"0": "glioma", "1": "meningioma", "2": "metastasis"}, "n", "must match the width"),
        ({"0": "glioma", "1": "glioma", "2": "metastasis"}, 3, "distinct"),
    ],
)
def test_labels_must_match_the_output_width(labels: dict[str, str], width: int | str, problem: str) -> None:
    with pytest.raises(ModelCardError, match=problem):
        parse_card(_classifier(labels, width))


def test_a_class_the_reports_do_not_know_is_refused() -> None:
    card = parse_card(_classifier({"0": "glioma", "1": "meningioma", "2": "lymphoma"}))
    with pytest.raises(ModelCardError, match="lymphoma"):
        tumour_classes(card)
