"""Findings → :class:`Report`: every section of the report derived from the findings, nothing else.

:func:`build_report` makes a new preliminary report; :func:`derive` recomputes the derived sections
after a radiologist edited the findings (used by :mod:`neuronav.report.lifecycle`).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from neuronav.analysis.pipeline import REFERENCE_IMAGE
from neuronav.findings import Findings, Lesion, ProducedBy
from neuronav.report import codes
from neuronav.report.model import (
    DISCLAIMERS,
    AIFindings,
    ChangeRow,
    ChangeVersusPrior,
    Code,
    KeySlices,
    Measurement,
    ModelInfo,
    Narrative,
    PrimaryDetection,
    Report,
    ReviewItem,
    SecondaryFindings,
    SliceAnnotation,
    StudyInfo,
    VisualData,
    model_info,
)
from neuronav.report.recommend import recommendations

SIZEABLE_LESION_ML = 1.0  # components below this (satellite fragments) are counted, not called lesions in the text
MAX_LESIONS_MEASURED = 5  # per-lesion rows for the largest lesions; the rest are counted in the text

VOLUME_ROWS: tuple[tuple[str, str, str, Code], ...] = (
    ("whole_tumour_ml", "whole_tumour_volume", "Whole tumour volume", codes.NEOPLASM),
    ("tumour_core_ml", "tumour_core_volume", "Tumour core volume", codes.TUMOUR_CORE),
    ("enhancing_ml", "enhancing_volume", "Enhancing tumour volume", codes.ENHANCING_TUMOUR),
    ("necrotic_core_ml", "necrotic_core_volume", "Necrotic / non-enhancing core volume", codes.NECROSIS),
    ("oedema_ml", "oedema_volume", "Oedema volume", codes.OEDEMA),
)


def new_report_id(when: datetime | None = None) -> str:
    """``NN-YYYYMMDD-xxxxxxxx``: the date and 8 random hex digits (an identifier, not a result)."""
    when = when or datetime.now(UTC)
    return f"NN-{when:%Y%m%d}-{secrets.token_hex(4)}"


def location_text(lesion: Lesion) -> str:
    """``left parietal: left postcentral gyrus [AAL2 Postcentral_L]``."""
    loc = lesion.location
    lobe = loc.lobe if loc.lobe != "unknown" else "unlocalised"
    return f"{loc.hemisphere} {lobe}: {loc.region}"


def _models(f: Findings) -> list[ModelInfo]:
    seen: dict[tuple[str, str], ModelInfo] = {}
    every: list[ProducedBy] = [
        *f.segmentation.produced_by,
        f.detection.produced_by,
        f.classification.produced_by,
        f.midline_shift.produced_by,
        f.ventricles.produced_by,
        f.haemorrhage.produced_by,
        *([f.overall_confidence_produced_by] if f.overall_confidence_produced_by is not None else []),
    ]
    for p in every:
        seen.setdefault((p.name, p.version), model_info(p))
    return list(seen.values())


def measurements(f: Findings) -> list[Measurement]:
    """The one table of numbers every structured output is written from."""
    seg = [model_info(p) for p in f.segmentation.produced_by]
    vols = f.segmentation.volumes.model_dump()
    rows = [
        Measurement(
            key=key,
            label=label,
            value=float(vols[field]),
            unit="mL",
            concept=codes.VOLUME,
            finding_site=site,
            source=f"/segmentation/volumes/{field}",
            produced_by=seg,
        )
        for field, key, label, site in VOLUME_ROWS
    ]
    for n, lesion in enumerate(f.segmentation.lesions[:MAX_LESIONS_MEASURED]):
        side = lesion.location.hemisphere
        ptr = f"/segmentation/lesions/{n}"
        i = lesion.index
        for attr, key, label, concept, unit in (
            ("volume_ml", "volume", "volume", codes.VOLUME, "mL"),
            ("max_diameter_mm", "max_diameter", "largest 3D diameter", codes.DIAMETER, "mm"),
            ("max_axial_diameter_mm", "long_axis", "longest axial diameter", codes.LONG_AXIS, "mm"),
            ("perpendicular_axial_diameter_mm", "short_axis", "perpendicular axial diameter", codes.SHORT_AXIS, "mm"),
            ("bidimensional_product_mm2", "bidimensional_product", "bidimensional product", codes.AREA, "mm2"),
        ):
            rows.append(
                Measurement(
                    key=f"lesion{i}_{key}",
                    label=f"Lesion {i} {label}",
                    value=float(getattr(lesion, attr)),
                    unit=unit,
                    concept=concept,
                    finding_site=codes.NEOPLASM,
                    lesion_index=i,
                    laterality=side,
                    source=f"{ptr}/{attr}",
                    produced_by=seg,
                )
            )
    ms, v, h = f.midline_shift, f.ventricles, f.haemorrhage
    rows += [
        Measurement(
            key="midline_shift",
            label="Midline shift (signed, + towards the patient's right)",
            value=float(ms.shift_mm),
            unit="mm",
            concept=codes.MIDLINE_SHIFT,
            finding_site=codes.BRAIN,
            source="/midline_shift/shift_mm",
            produced_by=[model_info(ms.produced_by)],
        ),
        Measurement(
            key="lateral_ventricles_volume",
            label="Lateral ventricles volume",
            value=float(v.total_ml),
            unit="mL",
            concept=codes.VOLUME,
            finding_site=codes.LATERAL_VENTRICLE,
            source="/ventricles/total_ml",
            produced_by=[model_info(v.produced_by)],
        ),
        Measurement(
            key="left_lateral_ventricle_volume",
            label="Left lateral ventricle volume",
            value=float(v.left_ml),
            unit="mL",
            concept=codes.VOLUME,
            finding_site=codes.LATERAL_VENTRICLE,
            laterality="left",
            source="/ventricles/left_ml",
            produced_by=[model_info(v.produced_by)],
        ),
        Measurement(
            key="right_lateral_ventricle_volume",
            label="Right lateral ventricle volume",
            value=float(v.right_ml),
            unit="mL",
            concept=codes.VOLUME,
            finding_site=codes.LATERAL_VENTRICLE,
            laterality="right",
            source="/ventricles/right_ml",
            produced_by=[model_info(v.produced_by)],
        ),
        Measurement(
            key="ventricle_asymmetry",
            label="Ventricular asymmetry index (L − R) / (L + R)",
            value=float(v.asymmetry),
            unit="1",
            concept=codes.ASYMMETRY,
            finding_site=codes.LATERAL_VENTRICLE,
            source="/ventricles/asymmetry",
            produced_by=[model_info(v.produced_by)],
        ),
        Measurement(
            key="haemorrhage_volume",
            label="Suspected haemorrhage volume",
            value=float(h.volume_ml),
            unit="mL",
            concept=codes.VOLUME,
            finding_site=codes.HAEMORRHAGE,
            source="/haemorrhage/volume_ml",
            produced_by=[model_info(h.produced_by)],
        ),
        Measurement(
            key="tumour_probability",
            label="Tumour probability",
            value=float(f.detection.probability),
            unit="1",
            concept=codes.PROBABILITY,
            finding_site=codes.BRAIN,
            source="/detection/probability",
            produced_by=[model_info(f.detection.produced_by)],
        ),
    ]
    if f.detection.tumour_detected:
        rows.append(
            Measurement(
                key="classification_confidence",
                label=f"Classification confidence ({f.classification.label})",
                value=float(f.classification.confidence),
                unit="1",
                concept=codes.CONFIDENCE,
                finding_site=codes.NEOPLASM,
                source="/classification/confidence",
                produced_by=[model_info(f.classification.produced_by)],
            )
        )
    return rows


def _primary(f: Findings) -> PrimaryDetection:
    big = f.segmentation.lesions[0] if f.segmentation.lesions else None
    detected = f.detection.tumour_detected
    return PrimaryDetection(
        detected=detected,
        probability=f.detection.probability,
        threshold=f.detection.threshold,
        location=location_text(big) if (big and detected) else None,
        size_mm=round(big.max_diameter_mm, 1) if (big and detected) else None,
        volume_ml=f.segmentation.volumes.whole_tumour_ml,
        lesion_count=len(f.segmentation.lesions),
        classification=f.classification.label if detected else None,
        classification_confidence=f.classification.confidence if detected else None,
        class_probabilities=dict(f.classification.probabilities) if detected else {},
    )


def _secondary(f: Findings) -> SecondaryFindings:
    return SecondaryFindings(
        oedema_present=f.oedema.present,
        oedema_ml=f.oedema.volume_ml,
        midline_shift_mm=f.midline_shift.shift_mm,
        midline_shift_level=f.midline_shift.level,
        ventricular_status=f.ventricles.status,
        ventricles_ml=f.ventricles.total_ml,
        ventricular_asymmetry=f.ventricles.asymmetry,
        haemorrhage_suspected=f.haemorrhage.suspected,
        haemorrhage_ml=f.haemorrhage.volume_ml,
    )


def _anatomical_review(f: Findings) -> list[ReviewItem]:
    lesions = f.segmentation.lesions if f.detection.tumour_detected else []
    fossa = [les for les in lesions if les.location.lobe == "cerebellum"]
    parenchyma = (
        f"{len(lesions)} lesion(s); the largest in the {location_text(lesions[0])}, {lesions[0].volume_ml:.1f} mL."
        if lesions
        else "No tumour detected by the AI."
    )
    shift = f.midline_shift
    return [
        ReviewItem(structure="Brain parenchyma", statement=parenchyma),
        ReviewItem(
            structure="Ventricular system",
            statement=f"Lateral ventricles {f.ventricles.status}: {f.ventricles.total_ml:.1f} mL "
            f"(left {f.ventricles.left_ml:.1f}, right {f.ventricles.right_ml:.1f}).",
        ),
        ReviewItem(
            structure="Midline",
            statement=f"Midline shift {shift.magnitude_mm:.1f} mm"
            + (f" towards the {'right' if shift.shift_mm > 0 else 'left'}" if shift.magnitude_mm >= 0.5 else "")
            + f" ({shift.level}).",
        ),
        ReviewItem(
            structure="Posterior fossa",
            statement=f"{len(fossa)} lesion(s) in the cerebellum." if fossa else "No lesion in the cerebellum.",
        ),
        ReviewItem(
            structure="Haemorrhage",
            statement=f"Suspected, {f.haemorrhage.volume_ml:.1f} mL within the tumour core."
            if f.haemorrhage.suspected
            else ("None suspected within the tumour." if lesions else "None suspected."),
        ),
        ReviewItem(structure="Skull base and extracranial", statement="Not assessed by NeuroNav."),
    ]


def _change(f: Findings) -> ChangeVersusPrior | None:
    c = f.change
    if c is None:
        return None
    now = f.segmentation.volumes.model_dump()
    labels = {field: label for field, _, label, _ in VOLUME_ROWS}
    rows = [
        ChangeRow(
            key=key,
            label=labels.get(key, key),
            prior_ml=c.prior_volumes_ml.get(key),
            current_ml=float(now[key]),
            change_percent=pct,
        )
        for key, pct in c.volume_change_percent.items()
    ]
    return ChangeVersusPrior(
        prior_study=c.prior_study, prior_date=c.prior_date, rano_category=c.rano_category, rule=c.rule, rows=rows
    )


def key_slices(f: Findings, segmentation: Path | None) -> KeySlices | None:
    """Slices through the largest lesion's centroid (else the image centre) on the segmentation grid."""
    if segmentation is None or not segmentation.is_file():
        return None
    import nibabel as nib

    img: Any = nib.load(str(segmentation))
    shape = np.asarray(img.shape[:3])
    affine = np.asarray(img.affine, dtype=np.float64)
    if f.detection.tumour_detected and f.segmentation.lesions:
        ras = np.asarray(f.segmentation.lesions[0].centroid_ras_mm, dtype=np.float64)
        ijk = np.linalg.solve(affine[:3, :3], ras - affine[:3, 3])
        through = "lesion centroid"
    else:
        ijk = (shape - 1) / 2.0
        ras = affine[:3, :3] @ ijk + affine[:3, 3]
        through = "image centre"
    idx = np.clip(np.rint(ijk).astype(int), 0, shape - 1)
    return KeySlices(
        sagittal_i=int(idx[0]),
        coronal_j=int(idx[1]),
        axial_k=int(idx[2]),
        centre_ras_mm=(round(float(ras[0]), 2), round(float(ras[1]), 2), round(float(ras[2]), 2)),
        through=through,  # type: ignore[arg-type]
    )


def _annotations(f: Findings, ks: KeySlices | None) -> list[SliceAnnotation]:
    if ks is None or ks.through != "lesion centroid" or not f.segmentation.lesions:
        return []
    big = f.segmentation.lesions[0]
    text = f"Lesion 1: {big.volume_ml:.1f} mL, {big.max_diameter_mm:.0f} mm, {location_text(big)}"
    return [
        SliceAnnotation(plane="axial", index=ks.axial_k, text=text),
        SliceAnnotation(plane="coronal", index=ks.coronal_j, text=text),
        SliceAnnotation(plane="sagittal", index=ks.sagittal_i, text=text),
    ]


def _coordinates(f: Findings) -> list[dict[str, Any]]:
    return [
        {
            "lesion": les.index,
            "centroid_ras_mm": list(les.centroid_ras_mm),
            "centroid_mni_mm": list(les.centroid_mni_mm),
        }
        for les in f.segmentation.lesions[:MAX_LESIONS_MEASURED]
    ]


def _visual(f: Findings, analysis_dir: Path | None) -> VisualData:
    seg_path = analysis_dir / f.segmentation.label_file if analysis_dir else None
    ref = analysis_dir / REFERENCE_IMAGE if analysis_dir else None
    ks = key_slices(f, seg_path)
    return VisualData(
        segmentation_file=f.segmentation.label_file,
        heatmap_file=f.segmentation.probability_file,
        reference_image_file=REFERENCE_IMAGE if (ref is not None and ref.is_file()) else None,
        key_slices=ks,
        coordinates_3d=_coordinates(f),
        slice_annotations=_annotations(f, ks),
    )


def narrative(f: Findings) -> Narrative:
    """The generated text of the preliminary report (the radiologist may rewrite it)."""
    p, s = _primary(f), _secondary(f)
    parts: list[str] = []
    if p.detected:
        n = p.lesion_count
        sizeable = sum(1 for les in f.segmentation.lesions if les.volume_ml >= SIZEABLE_LESION_ML)
        others = (
            f"; {n - 1} further separate component(s), {max(sizeable - 1, 0)} of them ≥ {SIZEABLE_LESION_ML:g} mL"
            if n > 1
            else ""
        )
        where = (
            f"in the {p.location}, largest diameter {p.size_mm:.0f} mm{others}"
            if p.location is not None and p.size_mm is not None
            else "without a measurable lesion in the segmentation"
        )
        parts.append(
            f"Tumour detected (probability {p.probability:.2f}) {where}; whole tumour volume, all components, "
            f"{p.volume_ml:.1f} mL "
            f"(enhancing {f.segmentation.volumes.enhancing_ml:.1f} mL, necrotic core "
            f"{f.segmentation.volumes.necrotic_core_ml:.1f} mL). Pattern most consistent with "
            f"{p.classification} (confidence {p.classification_confidence:.2f})."
        )
        if p.lesion_count > MAX_LESIONS_MEASURED:
            parts.append(f"{p.lesion_count - MAX_LESIONS_MEASURED} further small components are not tabulated.")
    else:
        parts.append(f"No tumour detected (probability {p.probability:.2f}, threshold {p.threshold:.2f}).")
    parts.append(
        f"Oedema {'present, ' + format(s.oedema_ml, '.1f') + ' mL' if s.oedema_present else 'not present'}. "
        f"Midline shift {abs(s.midline_shift_mm):.1f} mm. Lateral ventricles {s.ventricular_status}. "
        f"Haemorrhage {'suspected' if s.haemorrhage_suspected else 'not suspected'}."
    )
    if f.change is not None:
        parts.append(
            f"Compared with the prior study ({f.change.prior_date or 'date unknown'}): "
            f"{f.change.rano_category.replace('_', ' ')}."
        )
    if p.detected:
        sizeable = sum(1 for les in f.segmentation.lesions if les.volume_ml >= SIZEABLE_LESION_ML)
        several = (
            f"{sizeable} intracranial lesions ≥ {SIZEABLE_LESION_ML:g} mL, the largest"
            if sizeable > 1
            else "Intracranial mass"
        )
        impression = (
            f"{several}{', ' + p.location if p.location else ''}, most consistent with {p.classification} (AI)."
        )
        if f.midline_shift.magnitude_mm >= 5.0:
            impression += f" Mass effect with {f.midline_shift.magnitude_mm:.1f} mm midline shift."
    else:
        impression = "No intracranial tumour detected by the AI."
    return Narrative(findings_text=" ".join(parts), impression=impression)


def derive(report: Report, findings: Findings, *, keep_narrative: bool) -> Report:
    """The report with every derived section recomputed from (edited) findings."""
    visual = report.visual_data.model_copy(  # the images stay; the text about the lesions follows the findings
        update={
            "coordinates_3d": _coordinates(findings),
            "slice_annotations": _annotations(findings, report.visual_data.key_slices),
        }
    )
    return report.model_copy(
        update={
            "findings": findings,
            "study_info": _study_info(findings, report.study_info.upload_date),
            "ai_findings": AIFindings(
                primary_detection=_primary(findings),
                secondary_findings=_secondary(findings),
                anatomical_review=_anatomical_review(findings),
            ),
            "measurements": measurements(findings),
            "visual_data": visual,
            "change_versus_prior": _change(findings),
            "recommendations": recommendations(findings),
            "narrative": report.narrative if keep_narrative else narrative(findings),
        }
    )


def _study_info(f: Findings, upload_date: str) -> StudyInfo:
    seqs = ", ".join(f.study.sequences_used)
    return StudyInfo(
        upload_date=upload_date,
        scan_type=f"MRI Brain ({seqs})",
        patient_pseudonym=f.study.patient_pseudonym,
        study_instance_uid=f.study.study_instance_uid,
        study_date=f.study.study_date,
        reference_series_uid=f.study.reference_series_uid,
        reference_sequence=f.study.reference_sequence,
        sequences_used=list(f.study.sequences_used),
        sequences_missing=list(f.study.sequences_missing),
        input_kind=f.study.input_kind,
        models=_models(f),
        processing_time_s=round(float(f.timings_s.get("total", 0.0)), 2),
        overall_confidence=f.overall_confidence,
    )


def build_report(
    findings: Findings,
    *,
    analysis_dir: Path | None = None,
    received: datetime | None = None,
    report_id: str | None = None,
    now: datetime | None = None,
) -> Report:
    """A new preliminary report (version 1) from the findings of one analysis.

    ``analysis_dir`` is the folder of ``findings.json``: the key slices are placed on its
    segmentation. ``received`` is when the study reached NeuroNav (defaults to the analysis time).
    """
    now = now or datetime.now(UTC)
    upload = (received or findings.created).isoformat()
    return Report(
        report_id=report_id or new_report_id(now),
        version=1,
        status="preliminary",
        created=now,
        study_info=_study_info(findings, upload),
        ai_findings=AIFindings(
            primary_detection=_primary(findings),
            secondary_findings=_secondary(findings),
            anatomical_review=_anatomical_review(findings),
        ),
        measurements=measurements(findings),
        visual_data=_visual(findings, analysis_dir),
        change_versus_prior=_change(findings),
        recommendations=recommendations(findings),
        narrative=narrative(findings),
        disclaimers=list(DISCLAIMERS),
        findings=findings,
    )
