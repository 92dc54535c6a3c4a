"""Overall confidence: how far the analysis's own outputs are from their undecided values, as one number.

Algorithm ``neuronav.overall_confidence``, version :data:`VERSION` (recorded in the findings as
``overall_confidence_produced_by`` next to ``overall_confidence``). From the outputs of one analysis:

====================  ===========================================================================
detection certainty   ``|p − 0.5| × 2``, p = the detection model's tumour probability (0 at the
                      threshold 0.5, 1 at p = 0 or 1)
ensemble agreement    ``1 − u`` when a tumour is detected, u = the segmentation ensemble's
                      uncertainty (``segmentation.uncertainty``: disagreement of its members on the
                      tumour); 1 when no tumour is detected (on a normal brain u is measured on a few
                      scattered voxels and says nothing about the "no tumour" answer)
sequence coverage     ``0.7 + 0.3 × n / 4``, n = how many of T1, T1c, T2 and FLAIR were analysed
                      (0.775 with one sequence, 1 with all four)
class confidence      the classification model's highest class probability when a tumour is
                      detected; 1 when none is
====================  ===========================================================================

``overall confidence = detection certainty × ensemble agreement × sequence coverage × class
confidence``, clipped to [0, 1] and rounded to 4 decimals. Any one weak factor pulls it down: it
is low when the detector is near its threshold, the ensemble members disagree, sequences are
missing or the classifier hesitates between classes.

What it is not: it is not a calibrated probability that the findings are correct, and it has not
been validated against ground truth on patients (the models were trained and evaluated on synthetic
phantoms only). The weights (0.7 / 0.3 for coverage) are chosen by hand, not fitted. It is a
summary of the models' own uncertainty for triage: reports show it with this algorithm's name and
version, and a value below the report's threshold advises reading the images without relying on
the AI results (``neuronav.report.recommend.low_confidence``). It says nothing about pathology the
models were not made to find.

Bump :data:`VERSION` whenever the same analysis outputs would give a different value.
"""

from __future__ import annotations

from neuronav.findings import ProducedBy

ALGORITHM = "neuronav.overall_confidence"
VERSION = "1.0.0"
SEQUENCES = 4  # T1, T1c, T2, FLAIR
UNDECIDED = 0.5  # the tumour probability that says nothing (the detection threshold)
COVERAGE_FLOOR, COVERAGE_SPAN = 0.7, 0.3  # sequence coverage = floor + span × n / 4


def produced_by() -> ProducedBy:
    """The provenance recorded beside the value in the findings."""
    return ProducedBy(name=ALGORITHM, version=VERSION, kind="algorithm")


def overall_confidence(
    *,
    tumour_probability: float,
    tumour_detected: bool,
    ensemble_uncertainty: float,
    sequences_used: int,
    class_probability: float,
) -> float:
    """The overall confidence of one analysis (see the module docstring for the definition).

    ``class_probability`` is the classifier's highest probability; it and ``ensemble_uncertainty``
    count only when ``tumour_detected``.
    """
    if not 0 <= sequences_used <= SEQUENCES:
        raise ValueError(f"sequences_used must be 0..{SEQUENCES}, not {sequences_used}")
    detection_certainty = abs(tumour_probability - UNDECIDED) * 2.0
    ensemble_agreement = (1.0 - ensemble_uncertainty) if tumour_detected else 1.0
    coverage = COVERAGE_FLOOR + COVERAGE_SPAN * sequences_used / SEQUENCES
    class_confidence = class_probability if tumour_detected else 1.0
    value = detection_certainty * ensemble_agreement * coverage * class_confidence
    return round(min(max(float(value), 0.0), 1.0), 4)
