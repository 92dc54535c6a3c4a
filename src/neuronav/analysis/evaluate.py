"""Evaluation on unseen phantom studies and on real normal brains.

Each case is a full phantom study (seeds below the training range) analysed end to end exactly as a
user's study would be, and compared with its ground truth on the grid of the reference series. Two
kinds (:data:`KINDS`):

- ``dicom``: the study as a scanner writes it, with skull and scalp, as DICOM (geometry profiles the
  networks never saw: oblique, sagittal, coronal and multi-frame series, rotated heads);
- ``brats``: the same generator's study as a BraTS case (:mod:`neuronav.phantom.brats`: skull-stripped,
  1 mm, 240×240×155 on an SRI24-like grid, BraTS 2023 names), given as its folder.

:func:`evaluate_kinds` runs both side by side, on one or two seed sets, and reports each kind's
means and the spread between the seed sets (how far apart two runs with different seeds are).

The false-positive check runs the same pipeline on real
brains without tumour: the MNI152 template and nibabel's anatomical test image (both T1-weighted;
given as the T1c, the only contrast they have).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from neuronav.errors import InputError
from neuronav.training.data import TRAIN_SEED_BASE

KINDS = ("dicom", "brats")
LESION_CYCLE = ("glioma", "meningioma", "metastasis", "none")
PROFILE_CYCLE = ("varied", "clinical")
REGIONS = {"whole_tumour": (1, 2, 3), "tumour_core": (1, 3), "enhancing": (3,)}
DETECTABLE_ML = 1.0


def dice(pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]) -> float:
    denom = int(pred.sum() + truth.sum())
    return 1.0 if denom == 0 else 2.0 * float((pred & truth).sum()) / denom


def hd95(pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_], spacing: tuple[float, ...]) -> float | None:
    """95th percentile of the symmetric surface distance (mm); None when exactly one mask is empty."""
    if not pred.any() and not truth.any():
        return 0.0
    if not pred.any() or not truth.any():
        return None
    surf_p = pred & ~ndi.binary_erosion(pred)
    surf_t = truth & ~ndi.binary_erosion(truth)
    sp = ndi.distance_transform_edt(~surf_t, sampling=spacing)[surf_p]
    ps = ndi.distance_transform_edt(~surf_p, sampling=spacing)[surf_t]
    return float(np.percentile(np.concatenate([sp, ps]), 95))


@dataclass
class CaseResult:
    seed: int
    lesion: str
    profile: str
    truth_whole_ml: float
    detected: bool
    probability: float
    predicted_class: str | None
    dice: dict[str, float] = field(default_factory=dict)
    hd95_mm: dict[str, float | None] = field(default_factory=dict)
    volume_error: float | None = None  # relative, whole tumour
    centroid_error_mm: float | None = None
    midline_error_mm: float | None = None
    seconds: float = 0.0
    kind: str = "dicom"
    labelled_ml_when_negative: float = 0.0  # labelled voxels left in a study called negative (must be 0)
    skull_stripped_detected: bool | None = None


def _centroid_ras(mask: npt.NDArray[np.bool_], affine: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    if not mask.any():
        return None
    ijk = np.argwhere(mask).mean(axis=0)
    return np.asarray(affine[:3, :3] @ ijk + affine[:3, 3], dtype=np.float64)


def run_case(seed: int, work: Path, *, model: str | None = None, kind: str = "dicom") -> CaseResult:
    from neuronav.analysis.inputs import from_paths
    from neuronav.analysis.pipeline import analyze
    from neuronav.volume import load_nifti

    if kind not in KINDS:
        raise InputError(f"unknown evaluation format {kind!r}; choose one of {', '.join(KINDS)}")
    lesion = LESION_CYCLE[seed % len(LESION_CYCLE)]
    profile = PROFILE_CYCLE[(seed // len(LESION_CYCLE)) % len(PROFILE_CYCLE)]
    case_dir = work / (f"case-{seed}" if kind == "dicom" else f"{kind}-{seed}")
    truth_path: Path | None = None
    if kind == "dicom":
        from neuronav.phantom import generate_study

        study = generate_study(case_dir / "study", seed=seed, lesion=lesion, fmt="dicom", profile=profile)
        truth = study.truth
        source = case_dir / "study" / "dicom"
    else:
        from neuronav.phantom.brats import generate_brats_case

        case = generate_brats_case(case_dir / "study", seed=seed, lesion=lesion, profile=profile)
        truth = case.truth
        source = case.folder
        truth_path = case.labels
    started = time.perf_counter()
    findings = analyze(from_paths([source]), case_dir / "analysis", model=model)
    seconds = time.perf_counter() - started
    if truth_path is None:
        ref_name = findings.study.reference_sequence
        truth_path = next(s for s in study.series if s.name == ref_name).label_path
    truth_vol = load_nifti(truth_path)
    pred = load_nifti(case_dir / "analysis" / "segmentation.nii.gz")
    t_lab, p_lab = np.asarray(truth_vol.data), np.asarray(pred.data)
    if t_lab.shape != p_lab.shape:
        raise InputError(f"the segmentation {p_lab.shape} is not on the truth's grid {t_lab.shape}", str(case_dir))
    result = CaseResult(
        seed=seed,
        lesion=lesion,
        profile=profile,
        truth_whole_ml=float(truth["volumes_ml"]["whole_tumour"]),
        detected=findings.detection.tumour_detected,
        probability=findings.detection.probability,
        predicted_class=findings.classification.label,
        seconds=seconds,
        kind=kind,
        skull_stripped_detected=findings.study.skull_stripped,
    )
    if not result.detected:
        result.labelled_ml_when_negative = round(float(np.count_nonzero(p_lab)) * pred.voxel_volume_ml, 4)
    if lesion != "none":
        for name, labels in REGIONS.items():
            p, t = np.isin(p_lab, labels), np.isin(t_lab, labels)
            result.dice[name] = round(dice(p, t), 4)
            h = hd95(p, t, truth_vol.spacing)
            result.hd95_mm[name] = None if h is None else round(h, 2)
        true_ml = result.truth_whole_ml
        result.volume_error = round(abs(findings.segmentation.volumes.whole_tumour_ml - true_ml) / true_ml, 4)
        c_pred = _centroid_ras(p_lab > 0, pred.affine)
        c_true = _centroid_ras(t_lab > 0, truth_vol.affine)  # on the grid the truth is written on
        if c_pred is not None and c_true is not None:
            result.centroid_error_mm = round(float(np.linalg.norm(c_pred - c_true)), 2)
    result.midline_error_mm = round(abs(findings.midline_shift.shift_mm - float(truth["midline_shift_mm"])), 2)
    return result


def run_normal_brains(work: Path, *, model: str | None = None) -> list[dict[str, Any]]:
    """The pipeline on real brains without tumour; each should come back 'no tumour detected'."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    from neuronav.analysis.inputs import StudyInputs
    from neuronav.analysis.pipeline import analyze
    from neuronav.volume import Volume, load_nifti

    cases: list[tuple[str, Volume]] = []
    template = load_mni152_template(resolution=1)
    cases.append(("MNI152 2009 template (nilearn)", Volume(np.asarray(template.dataobj, np.float32), template.affine)))
    anat = Path(os.path.dirname(nib.__file__)) / "tests" / "data" / "anatomical.nii"
    if anat.exists():
        cases.append(("nibabel tests/data/anatomical.nii", load_nifti(anat)))
    out: list[dict[str, Any]] = []
    for n, (name, vol) in enumerate(cases):
        try:
            f = analyze(StudyInputs(volumes={"T1c": vol}, kind="nifti"), work / f"normal-{n}", model=model)
        except InputError as exc:
            out.append({"name": name, "refused": exc.problem, "detected": None})
            continue
        out.append(
            {
                "name": name,
                "detected": f.detection.tumour_detected,
                "probability": f.detection.probability,
                "whole_tumour_ml": f.segmentation.volumes.whole_tumour_ml,
            }
        )
    return out


def summarise(results: list[CaseResult], normals: list[dict[str, Any]]) -> dict[str, Any]:
    tumour = [r for r in results if r.lesion != "none"]
    detectable = [r for r in tumour if r.truth_whole_ml >= DETECTABLE_ML]
    negatives = [r for r in results if r.lesion == "none"]
    out: dict[str, Any] = {"cases": len(results), "tumour_cases": len(tumour), "normal_phantoms": len(negatives)}
    for name in REGIONS:
        d = [r.dice[name] for r in tumour if name in r.dice]
        h = [r.hd95_mm[name] for r in tumour if r.hd95_mm.get(name) is not None]
        out[f"dice_{name}_mean"] = round(float(np.mean(d)), 4) if d else None
        out[f"dice_{name}_median"] = round(float(np.median(d)), 4) if d else None
        out[f"hd95_{name}_median_mm"] = round(float(np.median(h)), 2) if h else None  # type: ignore[arg-type]
    out["sensitivity_lesions_ge_1ml"] = (
        round(sum(r.detected for r in detectable) / len(detectable), 4) if detectable else None
    )
    analysed = [n for n in normals if n["detected"] is not None]
    neg_total = len(negatives) + len(analysed)
    neg_correct = sum(not r.detected for r in negatives) + sum(not n["detected"] for n in analysed)
    # a refused study (e.g. partial brain coverage) is neither a true nor a false negative: listed apart
    out["specificity_incl_real_normals"] = round(neg_correct / neg_total, 4) if neg_total else None
    out["normal_brains_refused"] = [n["name"] for n in normals if n["detected"] is None]
    ve = [r.volume_error for r in tumour if r.volume_error is not None]
    out["volume_error_median"] = round(float(np.median(ve)), 4) if ve else None
    ce = [r.centroid_error_mm for r in tumour if r.centroid_error_mm is not None]
    out["centroid_error_median_mm"] = round(float(np.median(ce)), 2) if ce else None
    me = [r.midline_error_mm for r in results if r.midline_error_mm is not None]
    out["midline_error_mean_mm"] = round(float(np.mean(me)), 2) if me else None
    out["midline_error_max_mm"] = round(float(np.max(me)), 2) if me else None
    classified = [r for r in tumour if r.detected]
    out["classification_accuracy"] = (
        round(sum(r.predicted_class == r.lesion for r in classified) / len(classified), 4) if classified else None
    )
    out["seconds_per_study_median"] = round(float(np.median([r.seconds for r in results])), 1) if results else None
    # the one decision: a study called negative keeps no labelled voxel (0 everywhere)
    out["labelled_ml_in_negative_studies_max"] = (
        max((r.labelled_ml_when_negative for r in results), default=0.0) if results else None
    )
    out["normal_brains"] = normals
    return out


def evaluate(
    n_cases: int,
    seed: int,
    work: Path,
    *,
    model: str | None = None,
    keep: bool = False,
    progress: Callable[[int, int, CaseResult | None], None] | None = None,
) -> dict[str, Any]:
    """Generate and analyse ``n_cases`` unseen phantoms (as DICOM) from ``seed`` on; return the metrics."""
    return evaluate_kinds(n_cases, [seed], work, kinds=("dicom",), model=model, keep=keep, progress=progress)


def _check_seeds(n_cases: int, seed: int) -> None:
    if seed < 0 or seed + n_cases > TRAIN_SEED_BASE:
        raise InputError(f"evaluation seeds must lie in 0..{TRAIN_SEED_BASE - 1} (training uses the seeds above)")
    if n_cases < 1:
        raise InputError("--cases must be at least 1")


# the metrics compared between kinds and between seed sets (means over the cases that have them)
SPREAD_METRICS = (
    "dice_whole_tumour_mean",
    "dice_tumour_core_mean",
    "dice_enhancing_mean",
    "sensitivity_lesions_ge_1ml",
    "classification_accuracy",
    "volume_error_median",
    "midline_error_mean_mm",
)


def evaluate_kinds(
    n_cases: int,
    seeds: list[int],
    work: Path,
    *,
    kinds: tuple[str, ...] = KINDS,
    model: str | None = None,
    keep: bool = False,
    progress: Callable[[int, int, CaseResult | None], None] | None = None,
) -> dict[str, Any]:
    """``n_cases`` unseen phantoms per kind and per seed set (each set: ``seed``, ``seed + 1``, …).

    The summary's top level is over every case (as :func:`summarise` gives it); ``by_kind`` holds one
    summary per kind; with two or more seed sets ``seed_sets`` holds one per kind and set, and
    ``spread`` the largest difference between the sets' values of each of :data:`SPREAD_METRICS`.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise InputError(f"unknown evaluation format {', '.join(unknown) or '(none)'}; choose from {', '.join(KINDS)}")
    if not seeds:
        raise InputError("give at least one seed")
    for s in seeds:
        _check_seeds(n_cases, s)
    sets = [set(range(s, s + n_cases)) for s in seeds]
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            if sets[i] & sets[j]:
                raise InputError(f"the seed sets from {seeds[i]} and {seeds[j]} overlap; give sets {n_cases} apart")
    work.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, int], list[CaseResult]] = {}
    total = n_cases * len(seeds) * len(kinds)
    done = 0
    for first in seeds:
        for kind in kinds:
            for i in range(n_cases):
                r = run_case(first + i, work, model=model, kind=kind)
                results.setdefault((kind, first), []).append(r)
                if not keep:
                    shutil.rmtree(
                        work / (f"case-{first + i}" if kind == "dicom" else f"{kind}-{first + i}"), ignore_errors=True
                    )
                done += 1
                if progress is not None:
                    progress(done, total, r)
    normals = run_normal_brains(work, model=model)
    everything = [r for rs in results.values() for r in rs]
    summary = summarise(everything, normals)
    if len(kinds) > 1 or len(seeds) > 1:
        summary["by_kind"] = {
            k: _strip(summarise([r for (kk, _), rs in results.items() if kk == k for r in rs], [])) for k in kinds
        }
        summary["side_by_side"] = [
            {"metric": m, **{k: summary["by_kind"][k].get(m) for k in kinds}} for m in SPREAD_METRICS
        ]
    if len(seeds) > 1:
        per_set = {f"{k}@{s}": _strip(summarise(results[(k, s)], [])) for k in kinds for s in seeds}
        summary["seed_sets"] = per_set
        spread: dict[str, dict[str, float | None]] = {}
        for k in kinds:
            spread[k] = {}
            for m in SPREAD_METRICS:
                vals = [per_set[f"{k}@{s}"].get(m) for s in seeds]
                nums = [float(v) for v in vals if isinstance(v, (int, float))]
                spread[k][m] = round(max(nums) - min(nums), 4) if len(nums) == len(vals) else None
        summary["spread"] = spread
    summary["kinds"] = list(kinds)
    summary["seeds"] = list(seeds)
    summary["cases_per_kind_and_seed_set"] = n_cases
    summary["per_case"] = [r.__dict__ for r in everything]
    (work / "evaluation.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _strip(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("normal_brains", "normal_brains_refused", "per_case")}
