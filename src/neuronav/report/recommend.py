"""Recommendations: templated rules over the findings. Each cites the findings it rests on.

They are AI-generated suggestions for the reading physician, not orders. A rule is a pure function
of the findings; :data:`RULES` lists them in the order they appear in the report.
"""

from __future__ import annotations

from collections.abc import Callable

from neuronav.findings import Findings
from neuronav.report.model import Recommendation, Urgency

MIDLINE_SHIFT_URGENT_MM = 5.0
LARGE_LESION_ML = 30.0  # tumour core of one lesion
LARGE_DIAMETER_MM = 40.0  # longest axial core diameter of one lesion
LOW_CONFIDENCE = 0.5
HAEMORRHAGE_URGENT_ML = 5.0  # smaller suspected bleeds inside a tumour: "soon", not "urgent"

Rule = Callable[[Findings], Recommendation | None]


def _rec(rule_id: str, urgency: Urgency, text: str, *rests_on: tuple[str, object]) -> Recommendation:
    return Recommendation(
        rule_id=rule_id, urgency=urgency, text=text, rests_on=[f"{ptr} = {value}" for ptr, value in rests_on]
    )


def mass_effect(f: Findings) -> Recommendation | None:
    shift = f.midline_shift.magnitude_mm
    if f.detection.tumour_detected and shift >= MIDLINE_SHIFT_URGENT_MM:
        return _rec(
            "R-MASS-EFFECT",
            "urgent",
            f"Space-occupying lesion with {shift:.1f} mm midline shift (≥ {MIDLINE_SHIFT_URGENT_MM:g} mm): "
            "urgent neurosurgical review.",
            ("/detection/tumour_detected", True),
            ("/midline_shift/magnitude_mm", shift),
        )
    if shift >= MIDLINE_SHIFT_URGENT_MM:
        return _rec(
            "R-MIDLINE-SHIFT",
            "urgent",
            f"Midline shift of {shift:.1f} mm without a detected tumour: urgent clinical assessment for mass effect.",
            ("/midline_shift/magnitude_mm", shift),
        )
    return None


def haemorrhage(f: Findings) -> Recommendation | None:
    if not f.haemorrhage.suspected:
        return None
    return _rec(
        "R-HAEMORRHAGE",
        "urgent" if f.haemorrhage.volume_ml >= HAEMORRHAGE_URGENT_ML else "soon",
        f"Suspected intratumoural haemorrhage ({f.haemorrhage.volume_ml:.1f} mL): confirm on SWI or CT and "
        "correlate clinically.",
        ("/haemorrhage/suspected", True),
        ("/haemorrhage/volume_ml", f.haemorrhage.volume_ml),
    )


def large_lesion(f: Findings) -> Recommendation | None:
    """A large tumour by its core (labels 1 + 3), never by its oedema: the longest axial diameter of
    the core (as a radiologist measures it) ≥ :data:`LARGE_DIAMETER_MM` or a core ≥
    :data:`LARGE_LESION_ML` (the oedema around a small metastasis is reported apart and does not make
    it "large")."""
    if not f.detection.tumour_detected or not f.segmentation.lesions:
        return None
    big = max(f.segmentation.lesions, key=lambda x: x.core_ml if x.core_ml is not None else x.volume_ml)
    n = f.segmentation.lesions.index(big)
    core = big.core_ml if big.core_ml is not None else big.volume_ml
    diameter = big.max_axial_diameter_mm
    if core < LARGE_LESION_ML and diameter < LARGE_DIAMETER_MM:
        return None
    field = "core_ml" if big.core_ml is not None else "volume_ml"
    enhancing = f", enhancing part {big.enhancing_max_diameter_mm:.0f} mm" if big.enhancing_max_diameter_mm else ""
    return _rec(
        "R-LARGE-LESION",
        "soon",
        f"Large tumour (lesion {big.index}: core {core:.1f} mL, longest axial core diameter {diameter:.0f} mm"
        f"{enhancing}): "
        "neurosurgical and neuro-oncology consultation.",
        (f"/segmentation/lesions/{n}/{field}", core),
        (f"/segmentation/lesions/{n}/max_axial_diameter_mm", diameter),
    )


def tumour_type(f: Findings) -> Recommendation | None:
    if not f.detection.tumour_detected:
        return None
    label, conf = f.classification.label, f.classification.confidence
    cites = (
        ("/detection/tumour_detected", True),
        ("/classification/label", label),
        ("/classification/confidence", conf),
    )
    if label == "metastasis":
        text = (
            "Pattern suggests metastatic disease: search for a primary tumour (staging) and review at the tumour board."
        )
    elif label == "meningioma":
        text = (
            "Pattern suggests an extra-axial meningioma: neurosurgical opinion, or imaging follow-up by size and "
            "symptoms."
        )
    else:
        text = "Pattern suggests a glial tumour: neuro-oncology referral; consider perfusion MRI and MR spectroscopy."
    return _rec(f"R-TYPE-{str(label).upper()}", "soon", text, *cites)


def ventricles(f: Findings) -> Recommendation | None:
    status = f.ventricles.status
    if status == "enlarged":
        return _rec(
            "R-VENTRICLES-ENLARGED",
            "soon",
            f"Enlarged lateral ventricles ({f.ventricles.total_ml:.1f} mL): assess for hydrocephalus.",
            ("/ventricles/status", status),
            ("/ventricles/total_ml", f.ventricles.total_ml),
        )
    if status in ("compressed", "asymmetric"):
        return _rec(
            "R-VENTRICLES-MASS-EFFECT",
            "soon",
            f"Ventricles {status} (asymmetry {f.ventricles.asymmetry:+.2f}): evaluate mass effect and trapping.",
            ("/ventricles/status", status),
            ("/ventricles/asymmetry", f.ventricles.asymmetry),
        )
    return None


def progression(f: Findings) -> Recommendation | None:
    if f.change is None or f.change.rano_category != "progression":
        return None
    return _rec(
        "R-PROGRESSION",
        "soon",
        f"Volumetric progression versus the prior study of {f.change.prior_date or 'unknown date'}: "
        "neuro-oncology review of the treatment plan.",
        ("/change/rano_category", f.change.rano_category),
        ("/change/volume_change_percent/enhancing_ml", f.change.volume_change_percent.get("enhancing_ml")),
    )


def missing_sequences(f: Findings) -> Recommendation | None:
    missing = f.study.sequences_missing
    if not missing:
        return None
    return _rec(
        "R-INCOMPLETE-PROTOCOL",
        "routine",
        f"Analysis ran without {', '.join(missing)}: complete the brain tumour protocol for a full assessment.",
        ("/study/sequences_missing", missing),
    )


def low_confidence(f: Findings) -> Recommendation | None:
    if f.overall_confidence >= LOW_CONFIDENCE:
        return None
    algo = f.overall_confidence_produced_by
    by = f", {algo.name} {algo.version}" if algo is not None else ""
    return _rec(
        "R-LOW-CONFIDENCE",
        "routine",
        f"Low overall AI confidence ({f.overall_confidence:.2f}{by}; not a calibrated probability): read the images "
        "without relying on these results.",
        ("/overall_confidence", f.overall_confidence),
        *([("/overall_confidence_produced_by", f"{algo.name} {algo.version}")] if algo is not None else []),
    )


def no_tumour(f: Findings) -> Recommendation | None:
    if f.detection.tumour_detected:
        return None
    return _rec(
        "R-NO-TUMOUR",
        "routine",
        "No tumour detected by the AI: routine reading; the AI does not assess other pathology.",
        ("/detection/tumour_detected", False),
        ("/detection/probability", f.detection.probability),
    )


RULES: tuple[Rule, ...] = (
    mass_effect,
    haemorrhage,
    large_lesion,
    tumour_type,
    progression,
    ventricles,
    missing_sequences,
    low_confidence,
    no_tumour,
)


def recommendations(findings: Findings) -> list[Recommendation]:
    """Every rule that fires, urgent first (stable within one urgency)."""
    fired = [r for rule in RULES if (r := rule(findings)) is not None]
    order = {"urgent": 0, "soon": 1, "routine": 2}
    return sorted(fired, key=lambda r: order[r.urgency])
