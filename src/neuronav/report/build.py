"""Findings → :class:`Report`: every section of the report derived from the findings, nothing else.

:func:`build_report` makes a new preliminary report; :func:`derive` recomputes the derived sections
after a radiologist edited the findings (used by :mod:`neuronav.report.lifecycle`).
"""

from __future__ import annotations

import re
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


_ATLAS_CODE = re.compile(r"\s*\[AAL2 [^\]]*\]")
_LOBE_WORDS: dict[str, str] = {
    "frontal": "frontal lobe",
    "temporal": "temporal lobe",
    "parietal": "parietal lobe",
    "occipital": "occipital lobe",
    "insula": "insula",
    "limbic (cingulate)": "cingulate gyrus",
    "limbic (medial temporal)": "medial temporal lobe",
    "deep grey nuclei": "deep grey nuclei",
    "cerebellum": "cerebellar hemisphere",
}


def region_words(lesion: Lesion) -> str:
    """The atlas region in plain words, without its side and without the atlas code."""
    region = _ATLAS_CODE.sub("", lesion.location.region).strip()
    return re.sub(r"\b(left|right) ", "", region, count=1)


def location_text(lesion: Lesion) -> str:
    """Where a lesion is, in a radiologist's words: ``left frontal lobe (superior frontal gyrus)``;
    no atlas code (the atlas is named in the appendix)."""
    loc = lesion.location
    if loc.lobe == "unknown":
        return f"{loc.hemisphere} hemisphere (outside the atlas regions)" if loc.hemisphere != "midline" else "midline"
    lobe = _LOBE_WORDS.get(loc.lobe, loc.lobe)
    if loc.lobe == "cerebellum" and loc.hemisphere == "midline":
        lobe = "cerebellar vermis"
    side = "" if loc.hemisphere == "midline" else f"{loc.hemisphere} "
    where = f"{side}{lobe}" if loc.hemisphere != "midline" or loc.lobe == "cerebellum" else f"midline {lobe}"
    region = region_words(lesion)
    return f"{where} ({region})" if region and region != lobe else where


def core_ml(lesion: Lesion) -> float:
    """The lesion's tumour core (mL); findings before schema 1.3 have only the whole component."""
    return lesion.core_ml if lesion.core_ml is not None else lesion.volume_ml


def lesion_sentence(lesion: Lesion) -> str:
    """One lesion as a radiologist states it: where, the core's axial diameters, volumes, oedema apart."""
    parts = [
        f"Lesion {lesion.index}: {location_text(lesion)}, "
        f"{lesion.max_axial_diameter_mm:.0f} × {lesion.perpendicular_axial_diameter_mm:.0f} mm (axial), "
        f"core {core_ml(lesion):.1f} mL"
    ]
    if lesion.enhancing_ml is not None:
        parts.append(f"enhancing {lesion.enhancing_ml:.1f} mL")
    if lesion.oedema_ml is not None:
        parts.append(f"surrounding oedema {lesion.oedema_ml:.1f} mL")
    if lesion.satellites:
        parts.append(f"with {lesion.satellites} satellite nodule{'s' if lesion.satellites > 1 else ''}")
    return ", ".join(parts) + "."


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
    for n, lesion in enumerate(f.segmentation.lesions):  # every lesion: the same list in every output
        side = lesion.location.hemisphere
        ptr = f"/segmentation/lesions/{n}"
        i = lesion.index
        per_lesion: list[tuple[str, str, str, Code, Code, str]] = [
            (
                "max_axial_diameter_mm",
                "long_axis",
                "core, longest axial diameter",
                codes.LONG_AXIS,
                codes.TUMOUR_CORE,
                "mm",
            ),
            (
                "perpendicular_axial_diameter_mm",
                "short_axis",
                "core, perpendicular axial diameter",
                codes.SHORT_AXIS,
                codes.TUMOUR_CORE,
                "mm",
            ),
            ("max_diameter_mm", "max_diameter", "core, largest 3D diameter", codes.DIAMETER, codes.TUMOUR_CORE, "mm"),
            (
                "bidimensional_product_mm2",
                "bidimensional_product",
                "core, bidimensional product",
                codes.AREA,
                codes.TUMOUR_CORE,
                "mm2",
            ),
        ]
        if lesion.core_ml is not None:
            per_lesion += [
                ("core_ml", "core_volume", "core volume", codes.VOLUME, codes.TUMOUR_CORE, "mL"),
                ("enhancing_ml", "enhancing_volume", "enhancing volume", codes.VOLUME, codes.ENHANCING_TUMOUR, "mL"),
                (
                    "enhancing_max_diameter_mm",
                    "enhancing_max_diameter",
                    "enhancing, largest 3D diameter",
                    codes.DIAMETER,
                    codes.ENHANCING_TUMOUR,
                    "mm",
                ),
                ("oedema_ml", "oedema_volume", "surrounding oedema volume", codes.VOLUME, codes.OEDEMA, "mL"),
            ]
        else:  # findings before 1.3: one whole-tumour component
            per_lesion.append(("volume_ml", "volume", "volume", codes.VOLUME, codes.NEOPLASM, "mL"))
        for attr, key, label, concept, site, unit in per_lesion:
            value = getattr(lesion, attr)
            if value is None:
                continue
            rows.append(
                Measurement(
                    key=f"lesion{i}_{key}",
                    label=f"Lesion {i} {label}",
                    value=float(value),
                    unit=unit,
                    concept=concept,
                    finding_site=site,
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
        size_mm=round(big.max_diameter_mm, 1) if (big and detected) else None,  # the core's (schema 1.3)
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
        f"{_count(len(lesions))}; the largest in the {location_text(lesions[0])}, core {core_ml(lesions[0]):.1f} mL."
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
            statement=f"{_count(len(fossa))} in the cerebellum." if fossa else "No lesion in the cerebellum.",
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
    text = f"Lesion 1: {location_text(big)}, core {core_ml(big):.1f} mL, {big.max_diameter_mm:.0f} mm"
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
        for les in f.segmentation.lesions
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


_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _count(n: int, noun: str = "lesion") -> str:
    word = _NUMBERS[n] if n < len(_NUMBERS) else str(n)
    return f"{word[:1].upper()}{word[1:]} {noun}{'' if n == 1 else 's'}"


def narrative(f: Findings) -> Narrative:
    """The generated text of the preliminary report (the radiologist may rewrite it): each lesion as a
    radiologist counts it (core with its oedema, satellites joined), its location in plain words, the
    core's diameters; oedema reported apart; no atlas codes, no model names."""
    p, s = _primary(f), _secondary(f)
    les = f.segmentation.lesions if p.detected else []
    parts: list[str] = []
    if p.detected and les:
        parts.append(
            f"{_count(len(les))} consistent with tumour (AI probability {p.probability:.2f}). "
            + " ".join(lesion_sentence(x) for x in les)
        )
    elif p.detected:
        parts.append(
            f"Tumour suspected (AI probability {p.probability:.2f}) without a measurable tumour core in the "
            "segmentation."
        )
    if p.detected:
        v = f.segmentation.volumes
        parts.append(
            f"Total tumour core {v.tumour_core_ml:.1f} mL (enhancing {v.enhancing_ml:.1f} mL, necrotic / "
            f"non-enhancing {v.necrotic_core_ml:.1f} mL); with oedema {v.whole_tumour_ml:.1f} mL. Pattern most "
            f"consistent with {p.classification} (AI confidence {p.classification_confidence:.2f})."
        )
    else:
        parts.append(f"No tumour detected (AI probability {p.probability:.2f}, threshold {p.threshold:.2f}).")
    islands = f.segmentation.oedema_islands_ml
    oedema = (
        f"Oedema {'present, ' + format(s.oedema_ml, '.1f') + ' mL in total' if s.oedema_present else 'not present'}"
    )
    if s.oedema_present and islands >= 0.05:
        oedema += f" ({islands:.1f} mL of it not around a tumour core)"
    parts.append(
        f"{oedema}. Midline shift {abs(s.midline_shift_mm):.1f} mm"
        + (f" towards the {'right' if s.midline_shift_mm > 0 else 'left'}" if abs(s.midline_shift_mm) >= 0.5 else "")
        + f". Lateral ventricles {s.ventricular_status}. "
        f"Haemorrhage {'suspected' if s.haemorrhage_suspected else 'not suspected'}."
    )
    edited = f.segmentation.edited
    if edited is not None:  # provenance: the measurements above come from a corrected label map
        parts.append(
            f"Segmentation corrected by {edited.edited_by} ({edited.role}, version {edited.version} of "
            f"{edited.edited_at:%Y-%m-%d}); volumes and lesions are measured from the corrected segmentation."
        )
    if f.change is not None:
        parts.append(
            f"Compared with the prior study ({f.change.prior_date or 'date unknown'}): "
            f"{f.change.rano_category.replace('_', ' ')}."
        )
    if p.detected and les:
        big = les[0]
        if len(les) == 1:
            head = f"Intracranial mass in the {location_text(big)}"
        else:
            head = f"{_count(len(les), 'intracranial lesion')}, the largest in the {location_text(big)}"
        impression = (
            f"{head} ({big.max_axial_diameter_mm:.0f} × {big.perpendicular_axial_diameter_mm:.0f} mm), "
            f"most consistent with {p.classification} (AI)."
        )
        if f.midline_shift.magnitude_mm >= 5.0:
            impression += f" Mass effect with {f.midline_shift.magnitude_mm:.1f} mm midline shift."
    elif p.detected:
        impression = "Possible intracranial tumour without a measurable core (AI): review the images."
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
