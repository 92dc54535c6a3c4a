"""Build a valid Findings object for tests of the stages that read findings."""

from __future__ import annotations

from neuronav.findings import (
    Classification,
    Detection,
    Findings,
    Haemorrhage,
    Location,
    MidlineShift,
    Oedema,
    ProducedBy,
    Segmentation,
    Study,
    Ventricles,
    Volumes,
)

ALGO = ProducedBy(name="test", version="0", kind="algorithm")


def make_findings(enhancing_ml: float = 10.0, whole_tumour_ml: float = 30.0) -> Findings:
    core = enhancing_ml + 2.0
    return Findings(
        neuronav_version="test",
        study=Study(
            study_instance_uid="1.2.3",
            study_date="20240101",
            sequences_used=["T1c"],
            sequences_missing=[],
            reference_sequence="T1c",
            reference_series_uid=None,
            input_kind="nifti",
        ),
        detection=Detection(tumour_detected=True, probability=0.9, threshold=0.5, produced_by=ALGO),
        classification=Classification(label="glioma", probabilities={"glioma": 0.8}, confidence=0.8, produced_by=ALGO),
        segmentation=Segmentation(
            volumes=Volumes(
                necrotic_core_ml=2.0,
                oedema_ml=whole_tumour_ml - core,
                enhancing_ml=enhancing_ml,
                whole_tumour_ml=whole_tumour_ml,
                tumour_core_ml=core,
            ),
            lesions=[],
            uncertainty=0.1,
            produced_by=[ALGO],
        ),
        midline_shift=MidlineShift(shift_mm=0.0, magnitude_mm=0.0, level="test", produced_by=ALGO),
        ventricles=Ventricles(
            total_ml=20.0, left_ml=10.0, right_ml=10.0, asymmetry=0.0, status="normal", produced_by=ALGO
        ),
        oedema=Oedema(present=True, volume_ml=whole_tumour_ml - core),
        haemorrhage=Haemorrhage(suspected=False, volume_ml=0.0, produced_by=ALGO),
        overall_confidence=0.8,
        timings_s={},
    )


__all__ = ["Location", "make_findings"]
