"""Findings → report: every section derived from the findings, recommendations citing them."""

from __future__ import annotations

import re

from neuronav.findings import Change, Findings, Lesion, Location
from neuronav.report.build import build_report, measurements, new_report_id
from neuronav.report.model import DISCLAIMERS, REPORT_ID_PATTERN
from neuronav.report.recommend import recommendations
from tests.analysis.findings_factory import make_findings


def with_lesion(f: Findings, volume_ml: float = 30.0, diameter_mm: float = 45.0) -> Findings:
    lesion = Lesion(
        index=1,
        volume_ml=volume_ml,
        centroid_ras_mm=(-30.0, 10.0, 20.0),
        centroid_mni_mm=(-31.0, 12.0, 22.0),
        max_diameter_mm=diameter_mm,
        max_axial_diameter_mm=diameter_mm - 5,
        perpendicular_axial_diameter_mm=20.0,
        bidimensional_product_mm2=(diameter_mm - 5) * 20.0,
        location=Location(hemisphere="left", lobe="frontal", region="left middle frontal gyrus", atlas="AAL2"),
    )
    seg = f.segmentation.model_copy(update={"lesions": [lesion]})
    return f.model_copy(update={"segmentation": seg})


def test_report_id_format() -> None:
    rid = new_report_id()
    assert re.match(REPORT_ID_PATTERN, rid)
    assert new_report_id() != rid


def test_sections_come_from_the_findings() -> None:
    f = with_lesion(make_findings(enhancing_ml=10.0, whole_tumour_ml=30.0))
    r = build_report(f)
    assert r.status == "preliminary" and r.version == 1
    p = r.ai_findings.primary_detection
    assert p.detected and p.volume_ml == 30.0 and p.size_mm == 45.0
    assert p.location == "left frontal lobe (middle frontal gyrus)"
    assert p.classification == "glioma" and p.classification_confidence == 0.8
    assert r.ai_findings.secondary_findings.oedema_ml == f.oedema.volume_ml
    assert r.disclaimers == list(DISCLAIMERS)
    assert any("not for clinical use" in d.lower() for d in r.disclaimers)
    assert r.findings == f
    assert r.visual_data.key_slices is None  # no analysis folder given
    structures = [item.structure for item in r.ai_findings.anatomical_review]
    assert structures[:3] == ["Brain parenchyma", "Ventricular system", "Midline"]


def test_every_measurement_points_at_its_finding() -> None:
    f = with_lesion(make_findings())
    data = f.model_dump(mode="json")
    for m in measurements(f):
        node = data
        for part in m.source.strip("/").split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert abs(float(node) - m.value) < 0.01, m.key
        assert m.produced_by, m.key
    keys = [m.key for m in measurements(f)]
    assert len(keys) == len(set(keys))
    assert {"whole_tumour_volume", "lesion1_max_diameter", "midline_shift", "tumour_probability"} <= set(keys)


def test_urgent_review_for_large_lesion_with_midline_shift() -> None:
    f = with_lesion(make_findings(whole_tumour_ml=60.0), volume_ml=60.0, diameter_mm=55.0)
    shift = f.midline_shift.model_copy(update={"shift_mm": -6.2, "magnitude_mm": 6.2})
    recs = recommendations(f.model_copy(update={"midline_shift": shift}))
    first = recs[0]
    assert first.rule_id == "R-MASS-EFFECT" and first.urgency == "urgent"
    assert "/midline_shift/magnitude_mm = 6.2" in first.rests_on
    assert first.label == "AI-generated suggestion"
    assert "R-LARGE-LESION" in [r.rule_id for r in recs]


def test_no_urgent_review_below_five_mm() -> None:
    f = with_lesion(make_findings())
    shift = f.midline_shift.model_copy(update={"shift_mm": 4.9, "magnitude_mm": 4.9})
    recs = recommendations(f.model_copy(update={"midline_shift": shift}))
    assert all(r.urgency != "urgent" for r in recs)


def test_no_tumour_gives_routine_only() -> None:
    f = make_findings()
    det = f.detection.model_copy(update={"tumour_detected": False, "probability": 0.03})
    cls = f.classification.model_copy(update={"label": None, "confidence": 0.0})
    r = build_report(f.model_copy(update={"detection": det, "classification": cls}))
    assert [x.rule_id for x in r.recommendations] == ["R-NO-TUMOUR"]
    assert r.ai_findings.primary_detection.location is None
    assert "No intracranial tumour" in r.narrative.impression
    assert "classification_confidence" not in [m.key for m in r.measurements]


def test_haemorrhage_and_missing_sequences_are_cited() -> None:
    f = make_findings()
    haem = f.haemorrhage.model_copy(update={"suspected": True, "volume_ml": 1.5})
    study = f.study.model_copy(update={"sequences_missing": ["T1", "T2"]})
    recs = {r.rule_id: r for r in recommendations(f.model_copy(update={"haemorrhage": haem, "study": study}))}
    assert recs["R-HAEMORRHAGE"].urgency == "soon"  # a small suspected bleed inside a tumour
    assert "/haemorrhage/volume_ml = 1.5" in recs["R-HAEMORRHAGE"].rests_on
    big = f.haemorrhage.model_copy(update={"suspected": True, "volume_ml": 6.0})
    (urgent,) = [r for r in recommendations(f.model_copy(update={"haemorrhage": big})) if r.rule_id == "R-HAEMORRHAGE"]
    assert urgent.urgency == "urgent"
    assert "T1, T2" in recs["R-INCOMPLETE-PROTOCOL"].text


def test_change_versus_prior_table_and_progression() -> None:
    f = make_findings(enhancing_ml=15.0)
    change = Change(
        prior_study="1.2.9",
        prior_date="20230601",
        volume_change_percent={"enhancing_ml": 50.0, "whole_tumour_ml": 20.0},
        prior_volumes_ml={"enhancing_ml": 10.0, "whole_tumour_ml": 25.0},
        rano_category="progression",
        rule="test rule",
    )
    r = build_report(f.model_copy(update={"change": change}))
    assert r.change_versus_prior is not None
    rows = {row.key: row for row in r.change_versus_prior.rows}
    assert rows["enhancing_ml"].prior_ml == 10.0 and rows["enhancing_ml"].current_ml == 15.0
    assert rows["enhancing_ml"].change_percent == 50.0
    assert "R-PROGRESSION" in [x.rule_id for x in r.recommendations]
    assert "progression" in r.narrative.findings_text


def test_key_slices_through_the_lesion_centroid(analysed, report) -> None:  # type: ignore[no-untyped-def]
    import nibabel as nib
    import numpy as np

    ks = report.visual_data.key_slices
    assert ks is not None and ks.through == "lesion centroid"
    seg = nib.load(str(analysed.analysis_dir / "segmentation.nii.gz"))
    labels = np.asarray(seg.dataobj)
    assert labels[:, :, ks.axial_k].any() and labels[:, ks.coronal_j, :].any() and labels[ks.sagittal_i].any()
    centroid = np.asarray(report.findings.segmentation.lesions[0].centroid_ras_mm)
    voxel = seg.affine[:3, :3] @ np.array([ks.sagittal_i, ks.coronal_j, ks.axial_k]) + seg.affine[:3, 3]
    assert np.linalg.norm(voxel - centroid) <= np.linalg.norm(seg.affine[:3, :3], axis=0).max()
    assert report.visual_data.reference_image_file == "reference.nii.gz"
    assert report.study_info.patient_pseudonym and report.study_info.patient_pseudonym.startswith("NNP-")


def _lesion(index: int, core_ml: float, diameter_mm: float, oedema_ml: float, oedema_extent_mm: float) -> Lesion:
    return Lesion(
        index=index,
        volume_ml=core_ml + oedema_ml,
        centroid_ras_mm=(-30.0 + 40 * index, 10.0, 20.0),
        centroid_mni_mm=(-31.0 + 40 * index, 12.0, 22.0),
        max_diameter_mm=diameter_mm,
        max_axial_diameter_mm=diameter_mm - 1,
        perpendicular_axial_diameter_mm=diameter_mm - 3,
        bidimensional_product_mm2=(diameter_mm - 1) * (diameter_mm - 3),
        location=Location(
            hemisphere="right", lobe="parietal", region="right angular gyrus [AAL2 Angular_R]", atlas="AAL2"
        ),
        core_ml=core_ml,
        enhancing_ml=core_ml * 0.7,
        oedema_ml=oedema_ml,
        enhancing_max_diameter_mm=diameter_mm,
        oedema_max_diameter_mm=oedema_extent_mm,
    )


def _with(f: Findings, *lesions: Lesion) -> Findings:
    return f.model_copy(update={"segmentation": f.segmentation.model_copy(update={"lesions": list(lesions)})})


def test_the_impression_counts_lesions_and_names_them_in_plain_words() -> None:
    one = _with(make_findings(whole_tumour_ml=60.0), _lesion(1, 20.0, 38.0, 40.0, 70.0))
    r = build_report(one)
    assert r.narrative.impression.startswith(
        "Intracranial mass in the right parietal lobe (angular gyrus) (37 × 35 mm)"
    )
    two = _with(
        make_findings(whole_tumour_ml=60.0), _lesion(1, 20.0, 38.0, 30.0, 70.0), _lesion(2, 2.0, 15.0, 8.0, 30.0)
    )
    r = build_report(two)
    assert r.narrative.impression.startswith("Two intracranial lesions, the largest in the right parietal lobe")
    assert r.ai_findings.primary_detection.lesion_count == 2
    for text in (
        r.narrative.findings_text,
        r.narrative.impression,
        *(i.statement for i in r.ai_findings.anatomical_review),
    ):
        assert "AAL2" not in text and "[" not in text
    assert "surrounding oedema 30.0 mL" in r.narrative.findings_text  # oedema reported apart, per lesion
    lesion_keys = {m.lesion_index for m in r.measurements if m.lesion_index is not None}
    assert lesion_keys == {1, 2}  # every lesion measured: the structured outputs list them all


def test_a_small_metastasis_with_much_oedema_is_not_a_large_lesion() -> None:
    """The issue's case: a 3.4 mL core whose oedema spans 55 mm got "Large lesion (55 mm)"."""
    f = _with(make_findings(whole_tumour_ml=60.0), _lesion(1, 3.4, 19.0, 56.6, 55.0))
    assert "R-LARGE-LESION" not in [r.rule_id for r in recommendations(f)]
    big = _with(make_findings(whole_tumour_ml=60.0), _lesion(1, 25.0, 42.0, 20.0, 60.0))
    (rec,) = [r for r in recommendations(big) if r.rule_id == "R-LARGE-LESION"]
    assert "core 25.0 mL" in rec.text and "41 mm" in rec.text
    assert "/segmentation/lesions/0/core_ml = 25.0" in rec.rests_on
