"""One study → findings: the analysis stages in order, each timed.

inputs → preprocess → segmentation ensemble → detection (the one decision: a negative study has no
       labelled voxel in any output) → labels on the reference grid → measurements (per-lesion
       probability) → classification → findings.json, segmentation.nii.gz, probability.nii.gz
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from neuronav import __version__
from neuronav.analysis.inputs import ANALYSED, StudyInputs
from neuronav.errors import InputError
from neuronav.findings import (
    Change,
    Classification,
    Detection,
    Findings,
    Segmentation,
    Study,
    TumourClass,
)
from neuronav.volume import Volume, save_nifti

if TYPE_CHECKING:  # importing the models package loads ONNX Runtime: only when analysing
    from neuronav.analysis.models import ModelCard

ProgressFn = Callable[[str, float], None]
DETECTION_THRESHOLD = 0.5
REFERENCE_IMAGE = "reference.nii.gz"  # the reference series itself, on the grid of segmentation.nii.gz
SEQUENCE_IMAGE = "sequence-{name}.nii.gz"  # each input sequence on its own grid, in scanner space (viewers)
# the registration the lesions were located with (reference RAS mm → MNI mm): a corrected label map is
# measured again with it (neuronav.workflow.segmentations)
REGISTRATION_FILE = "registration.json"


def sequence_images(inputs: StudyInputs) -> list[str]:
    """The file names :func:`analyze` writes for the viewers' sequence switcher, one per input."""
    return [SEQUENCE_IMAGE.format(name=name) for name in sorted(inputs.volumes)]


def _compact(data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """int16 when the image holds whole numbers in range (as MR pixel data does), else float32."""
    arr = np.asarray(data)
    if arr.size and np.all(np.isfinite(arr)):
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= -32768 and hi <= 32767 and np.array_equal(arr, np.round(arr)):
            return arr.astype(np.int16)
    return arr.astype(np.float32)


def analyze(
    inputs: StudyInputs,
    out_dir: Path,
    *,
    model: str | None = None,
    prior: Path | None = None,
    debug_dir: Path | None = None,
    progress: ProgressFn | None = None,
) -> Findings:
    """Analyse one study; write findings.json, segmentation.nii.gz, probability.nii.gz, reference.nii.gz,
    registration.json and one sequence-<NAME>.nii.gz per input sequence."""
    from neuronav.analysis import confidence, measure
    from neuronav.analysis.features import classification_features, detection_features
    from neuronav.analysis.inference import confine_to_head, segment
    from neuronav.analysis.models import ModelError, resolve
    from neuronav.analysis.preprocess import preprocess

    def step(name: str, fraction: float) -> None:
        if progress is not None:
            progress(name, fraction)

    timings: dict[str, float] = {}
    prior_findings = _read_prior(prior) if prior is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)

    step("preprocessing", 0.05)
    t0 = time.perf_counter()
    pre = preprocess(inputs.volumes, debug_dir=debug_dir)
    timings["preprocess"] = time.perf_counter() - t0

    step("segmentation", 0.5)
    t0 = time.perf_counter()
    seg_models = resolve(model, "segmentation")
    seg = segment(pre.channels, seg_models)
    timings["segmentation"] = time.perf_counter() - t0

    grid_prob, grid_labels, tumour_probability = confine_to_head(seg.probabilities, pre.brain_mask)

    # ONE decision: the detection head's. A study it calls negative has no labelled voxel in any
    # output (segmentation, probability map, SEG, viewer, SC, report): every output below derives
    # from the labels and probabilities decided here, never from the segmentation before it.
    step("detection", 0.6)
    t0 = time.perf_counter()
    (detector,) = resolve(None, "detection")
    det_x = detection_features(tumour_probability, pre.brain_mask)[None]
    p_tumour = float(detector.run({"features": det_x})["probabilities"][0, 1])
    detected = p_tumour >= DETECTION_THRESHOLD
    cls_labels = grid_labels  # the classifier reads the segmentation it was trained on
    if not detected:
        grid_prob, grid_labels = dismiss(grid_prob, grid_labels)
    timings["detection"] = time.perf_counter() - t0

    step("labels on the reference grid", 0.65)
    t0 = time.perf_counter()
    ref = pre.reference_volume
    ref_prob = np.stack([np.asarray(pre.to_reference(p, order=1), np.float32) for p in grid_prob])
    ref_labels = np.asarray(np.argmax(ref_prob, axis=0), dtype=np.uint8)
    heatmap = np.asarray(ref_prob[1:].sum(axis=0), dtype=np.float32)  # 0 outside the analysed grid
    del ref_prob
    save_nifti(Volume(ref_labels, ref.affine), out_dir / "segmentation.nii.gz")
    heat_u8 = np.asarray(np.rint(np.clip(heatmap, 0.0, 1.0) * 255.0), dtype=np.uint8)
    save_nifti(Volume(heat_u8, ref.affine), out_dir / "probability.nii.gz", slope=1.0 / 255.0)
    save_nifti(Volume(_compact(ref.data), ref.affine), out_dir / REFERENCE_IMAGE)  # for key images and viewers
    for name, vol in sorted(inputs.volumes.items()):  # as acquired: a viewer aligns them in scanner space
        save_nifti(Volume(_compact(vol.data), vol.affine), out_dir / SEQUENCE_IMAGE.format(name=name))
    timings["resample_and_write"] = time.perf_counter() - t0

    step("measurements", 0.8)
    t0 = time.perf_counter()
    volumes = measure.tumour_volumes(ref_labels, ref.affine)
    found = measure.tumour_lesions(ref_labels, ref.affine, pre.world_to_mni, probability=heatmap)
    del heatmap
    shift = measure.midline_shift(pre)
    vents = measure.ventricles(pre, grid_labels)
    haem = measure.haemorrhage(pre, grid_labels)
    oedema = measure.oedema(volumes)
    timings["measurements"] = time.perf_counter() - t0

    step("classification", 0.9)
    t0 = time.perf_counter()
    (classifier,) = resolve(None, "classification")
    class_names = tumour_classes(classifier.card)
    cls_x = classification_features(cls_labels, pre.brain_mask, pre.channels.get("T1c"))[None]
    cls_p = classifier.run({"features": cls_x})["probabilities"][0]
    if cls_p.shape != (len(class_names),):
        raise ModelError(
            f"{classifier.card.spec}: the model gave {cls_p.shape[0]} class probabilities, "
            f"its card names {len(class_names)} classes ({', '.join(class_names)})"
        )
    probabilities: dict[str, float] = {name: round(float(p), 4) for name, p in zip(class_names, cls_p, strict=True)}
    best = int(np.argmax(cls_p))
    timings["classification"] = time.perf_counter() - t0

    used = [s for s in ANALYSED if s in pre.channels]
    missing = [s for s in ANALYSED if s not in pre.channels]
    overall = confidence.overall_confidence(
        tumour_probability=p_tumour,
        tumour_detected=detected,
        ensemble_uncertainty=float(seg.uncertainty),
        sequences_used=len(used),
        class_probability=float(cls_p[best]),
    )
    timings["total"] = sum(timings.values())
    findings = Findings(
        neuronav_version=__version__,
        study=Study(
            study_instance_uid=inputs.study_instance_uid,
            study_date=inputs.study_date,
            sequences_used=used,
            sequences_missing=missing,
            reference_sequence=pre.reference,
            reference_series_uid=inputs.series_uids.get(pre.reference),
            input_kind="dicom" if inputs.kind == "dicom" else "nifti",
            patient_pseudonym=inputs.patient_pseudonym,
            skull_stripped=pre.skull_stripped,
        ),
        detection=Detection(
            tumour_detected=detected,
            probability=round(p_tumour, 4),
            threshold=DETECTION_THRESHOLD,
            produced_by=detector.produced_by(),
        ),
        classification=Classification(
            label=class_names[best] if detected else None,
            probabilities=probabilities,
            confidence=round(float(cls_p[best]), 4) if detected else 0.0,
            produced_by=classifier.produced_by(),
        ),
        segmentation=Segmentation(
            volumes=volumes,
            lesions=found.lesions,
            oedema_islands_ml=found.oedema_islands_ml,
            uncertainty=round(float(seg.uncertainty), 4),
            produced_by=[m.produced_by() for m in seg_models],
        ),
        midline_shift=shift,
        ventricles=vents,
        oedema=oedema,
        haemorrhage=haem,
        overall_confidence=overall,
        overall_confidence_produced_by=confidence.produced_by(),
        timings_s={k: round(v, 3) for k, v in timings.items()},
        change=_change(volumes.model_dump(), prior_findings) if prior_findings else None,
    )
    write_findings(findings, out_dir / "findings.json")
    write_registration(pre.world_to_mni, ref.affine, out_dir / REGISTRATION_FILE)
    step("done", 1.0)
    return findings


def dismiss(
    probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A study the detection head calls negative: every voxel background (probability 1, label 0)."""
    prob = np.zeros_like(probabilities)
    prob[0] = 1.0
    return prob, np.zeros_like(labels)


def tumour_classes(card: ModelCard) -> tuple[TumourClass, ...]:
    """The classifier's classes in output order, from its card's labels; each must be a class the
    findings and reports know (:data:`neuronav.findings.TumourClass`), else :class:`ModelCardError`."""
    from neuronav.analysis.models import ModelCardError

    known: tuple[TumourClass, ...] = get_args(TumourClass)
    names = card.class_names
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ModelCardError(
            f"{card.spec}: the card's labels {', '.join(unknown)} are not tumour classes NeuroNav reports "
            f"({', '.join(known)})"
        )
    return tuple(k for n in names for k in known if k == n)


def write_findings(findings: Findings, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(findings.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def write_registration(world_to_mni: np.ndarray[Any, Any], reference_affine: np.ndarray[Any, Any], path: Path) -> Path:
    """The registration of the analysis: ``world_to_mni`` (4×4, reference scanner RAS mm → MNI152 mm) and
    the reference grid's affine, as JSON."""
    doc = {
        "world_to_mni": np.asarray(world_to_mni, dtype=np.float64).tolist(),
        "reference_affine": np.asarray(reference_affine, dtype=np.float64).tolist(),
    }
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_registration(path: Path) -> np.ndarray[Any, Any]:
    """``world_to_mni`` of :func:`write_registration`; :class:`InputError` naming the file when unfit."""
    try:
        w2m = np.asarray(json.loads(path.read_text())["world_to_mni"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not a NeuroNav registration file ({exc})", str(path)) from exc
    if w2m.shape != (4, 4) or not np.all(np.isfinite(w2m)):
        raise InputError("the registration is not a finite 4×4 matrix", str(path))
    return w2m


def _read_prior(prior: Path) -> Findings:
    path = prior / "findings.json" if prior.is_dir() else prior
    try:
        return Findings.model_validate_json(path.read_text())
    except FileNotFoundError as exc:
        raise InputError("no findings.json of a prior analysis here", str(prior)) from exc
    except ValueError as exc:
        raise InputError(f"not a NeuroNav findings file ({str(exc).splitlines()[0]})", str(path)) from exc


def _change(current: dict[str, Any], prior: Findings) -> Change:
    """Volume change per region and a RANO-style volumetric category on the enhancing tumour."""
    return change_against(
        current,
        prior.segmentation.volumes.model_dump(),
        prior_study=str(prior.study.study_instance_uid or ""),
        prior_date=prior.study.study_date,
    )


def change_against(current: dict[str, Any], before: dict[str, Any], *, prior_study: str, prior_date: str) -> Change:
    """:func:`_change` from the prior's volumes (mL per region): what a corrected label map is compared
    with again (the prior's volumes are kept in :attr:`Change.prior_volumes_ml`)."""
    pct: dict[str, float | None] = {}
    for key, now in current.items():
        was = float(before[key])
        pct[key] = None if was <= 0 else round(100.0 * (float(now) - was) / was, 1)
    et_now, et_was = float(current["enhancing_ml"]), float(before["enhancing_ml"])
    if et_was > 0 and et_now < 0.05:
        category = "complete_response"
    elif et_was <= 0:
        category = "progression" if et_now >= 0.05 else "stable"
    elif et_now >= 1.4 * et_was:
        category = "progression"
    elif et_now <= 0.35 * et_was:
        category = "partial_response"
    else:
        category = "stable"
    return Change(
        prior_study=prior_study,
        prior_date=prior_date,
        volume_change_percent=pct,
        prior_volumes_ml={k: float(v) for k, v in before.items()},
        rano_category=category,  # type: ignore[arg-type]
        rule="volumetric RANO on enhancing tumour: ≥ +40 % progression, ≤ −65 % partial response, "
        "none left complete response (< 0.05 mL), else stable",
    )


def summary(findings: Findings) -> dict[str, Any]:
    """A short, PHI-free dictionary for the CLI."""
    s = findings.segmentation
    return {
        "tumour_detected": findings.detection.tumour_detected,
        "probability": findings.detection.probability,
        "classification": findings.classification.label,
        "whole_tumour_ml": s.volumes.whole_tumour_ml,
        "enhancing_ml": s.volumes.enhancing_ml,
        "lesions": len(s.lesions),
        "midline_shift_mm": findings.midline_shift.shift_mm,
        "overall_confidence": findings.overall_confidence,
        "seconds": findings.timings_s.get("total"),
    }
