"""Preprocessing: from the sequences of one study to model-ready channels on the working grid.

Steps (each timed; with ``debug_dir`` each writes its output as NIfTI):

1. reorient   every sequence to canonical RAS axes (flips/permutations, no resampling);
2. coregister each sequence rigidly onto the reference (Mattes MI, 4 → 2 mm, started from the
              scanner geometry; identity is kept when the fit does not beat it);
3. mni        affine (12 dof) registration of the T1 (else the reference) to the MNI152 template,
              then ONE interpolation per sequence from its own voxels onto :data:`WORKING_GRID`
              (reorientation, co-registration and MNI transforms composed; anti-aliased first);
4. brain mask the MNI152 brain mask (already in MNI space, so on the working grid it is the template
              mask) dilated by one voxel (2 mm) so that lesions at the brain surface are kept, minus
              voxels that are clearly background (air: below 10 % of the brain median in every
              sequence), largest component, holes filled;
5. bias       N4 on the channel shrunk ×4 (2 levels × 25 iterations), the field applied at 2 mm;
6. normalise  z-score within the brain mask using mean/SD of the 1–99th-percentile-clipped brain
              voxels, clipped to [−5, 5], exactly 0 outside the brain mask.

Skull-stripped inputs (BraTS, most research data sets) are detected from the images
(:func:`skull_stripped`): every sequence has an exactly constant background (zero) around ONE
compact support of brain size (0.4–2.2 L; a head with scalp and skull is ≥ 2.5 L, and a scanner
image has noise, not an exact constant, in its background). Then step 3 registers to the template's
brain (the template masked by its brain mask) instead of the whole head, and step 4's brain mask is
the images' own nonzero support on the working grid (no template prior, no skull stripping of a
stripped brain). :attr:`Preprocessed.skull_stripped` says which path ran.

Geometry: all coordinates are RAS mm. ``world`` means the reference series' scanner frame.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from neuronav.analysis import registration as reg
from neuronav.analysis.grid import WORKING_GRID, WorkingGrid, load_template
from neuronav.errors import InputError
from neuronav.volume.core import Volume

__all__ = ["SEQUENCES", "WORKING_GRID", "Preprocessed", "WorkingGrid", "preprocess"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
ProgressFn = Callable[[str, float], None]

SEQUENCES = ("T1", "T1c", "T2", "FLAIR")
_REFERENCE_ORDER = ("T1c", "FLAIR", "T2", "T1")
_CLIP = 5.0
_MIN_FOV_MM = 60.0  # along at least two axes
_MIN_FOV_ANY_MM = 30.0
_MIN_INTERIOR_MI = 0.08  # |Mattes MI| in the template brain interior; non-head objects stay below 0.03
_BACKGROUND_FRACTION = 0.10
# a study must image most of the brain: on a partial field of view the networks see cut edges they
# were never trained on, and a tumour outside it would be missed
MIN_BRAIN_COVERAGE = 0.6
# skull-stripped input: the brain's support (mL) and how exactly constant the background must be
STRIPPED_SUPPORT_ML = (400.0, 2200.0)
_STRIPPED_BACKGROUND = 0.99  # of the voxels outside the support hold exactly the background value
_STRIPPED_MIN_OUTSIDE = 0.2  # of the field of view is background (a brain filling the FOV says nothing)


@dataclass(eq=False)
class Preprocessed:
    """The output of :func:`preprocess`.

    channels:     per sequence, float32 (96, 112, 96) on :data:`WORKING_GRID`: bias-corrected,
                  z-scored within ``brain_mask`` (clipped to ±5) and exactly 0 outside it.
    brain_mask:   bool (96, 112, 96) on the working grid.
    reference:    the sequence whose scanner frame is "world"; ``reference_volume`` as given.
    world_to_mni: 4×4, reference scanner RAS mm → MNI152 mm.
    coreg:        per sequence, 4×4 rigid map of that sequence's RAS mm into the reference's.
    timings:      seconds per step.
    metrics:      registration quality (Mattes MI, ITK sign: more negative is better).
    skull_stripped: the inputs were detected as skull-stripped (:func:`skull_stripped`).
    """

    channels: dict[str, F32Array]
    brain_mask: BoolArray
    reference: str
    reference_volume: Volume
    world_to_mni: FloatArray
    coreg: dict[str, FloatArray]
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    grid: WorkingGrid = WORKING_GRID
    skull_stripped: bool = False

    def working_to_world(self) -> FloatArray:
        """4×4: working-grid voxel index → reference scanner RAS mm."""
        return np.asarray(np.linalg.inv(self.world_to_mni) @ self.grid.affine, dtype=np.float64)

    def to_reference(self, grid_array: npt.NDArray[np.generic], *, order: int) -> npt.NDArray[np.generic]:
        """Resample a working-grid array onto the reference series' own voxel grid (the shape of
        ``reference_volume.data``). Labels: ``order=0`` (dtype kept); probabilities: ``order=1``."""
        if grid_array.shape != self.grid.shape:
            raise ValueError(f"expected an array of shape {self.grid.shape}, got {grid_array.shape}")
        ref = self.reference_volume
        # reference voxel → world → MNI → working voxel
        return reg.resample(grid_array, self.working_to_world(), ref.shape, ref.affine, order=order)

    def from_reference(self, ref_array: npt.NDArray[np.generic], *, order: int) -> npt.NDArray[np.generic]:
        """The forward mapping: an array on the reference series' grid → the working grid."""
        ref = self.reference_volume
        if ref_array.shape != ref.shape:
            raise ValueError(f"expected an array of shape {ref.shape}, got {ref_array.shape}")
        return reg.resample(ref_array, ref.affine, self.grid.shape, self.working_to_world(), order=order)


def _canonical_key(key: str) -> str | None:
    for name in SEQUENCES:
        if str(key).lower() == name.lower():
            return name
    return None


def _check_looks_like_mri(name: str, vol: Volume) -> None:
    shape = vol.shape
    if min(shape) < 4:
        raise InputError(f"{name} does not look like a brain MRI: it is a single slice or a 2D image (shape {shape})")
    extent = np.array(shape, dtype=np.float64) * np.array(vol.spacing)
    if np.sort(extent)[1] < _MIN_FOV_MM or extent.min() < _MIN_FOV_ANY_MM:
        ext = "×".join(f"{e:.0f}" for e in extent)
        raise InputError(
            f"{name} does not look like a brain MRI: its field of view ({ext} mm) is too small "
            f"(needs ≥ {_MIN_FOV_MM:.0f} mm along two axes and ≥ {_MIN_FOV_ANY_MM:.0f} mm along all)"
        )
    data = np.asarray(vol.data, dtype=np.float64)
    finite = data[np.isfinite(data)]
    if finite.size == 0 or float(finite.max()) <= float(finite.min()):
        raise InputError(f"{name} does not look like a brain MRI: it holds no image contrast (constant)")


def _select(volumes: Mapping[str, Volume], reference: str | None) -> tuple[dict[str, Volume], str]:
    given = sorted(str(k) for k in volumes)
    chosen: dict[str, Volume] = {}
    for key, vol in volumes.items():
        name = _canonical_key(key)
        if name is not None:
            chosen[name] = vol
    if not any(s in chosen for s in ("T1c", "FLAIR", "T2")):
        raise InputError(
            f"preprocessing needs at least one of T1c, FLAIR or T2; given: {', '.join(given) or 'nothing'}"
        )
    if reference is None:
        ref = next(s for s in _REFERENCE_ORDER if s in chosen)
    else:
        ref_name = _canonical_key(reference)
        if ref_name is None or ref_name not in chosen:
            raise InputError(f"reference sequence {reference!r} is not among the inputs ({', '.join(given)})")
        ref = ref_name
    return chosen, ref


def _to_float(vol: Volume) -> F32Array:
    arr = np.asarray(vol.data, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    return arr


@lru_cache(maxsize=1)
def _template_mask_on_grid() -> BoolArray:
    t = load_template()
    m = (
        np.asarray(
            reg.resample(t.brain_mask.astype(np.float32), t.affine, WORKING_GRID.shape, WORKING_GRID.affine),
            dtype=np.float32,
        )
        > 0.5
    )
    out = np.asarray(ndi.binary_dilation(m, iterations=1), dtype=bool)
    out.setflags(write=False)
    return out


def support(vol: Volume) -> tuple[BoolArray, float]:
    """The support of an image: voxels different from its background value (the minimum), largest
    connected component, holes filled; and the fraction of the rest that holds exactly that value."""
    arr = _to_float(vol)
    floor = float(arr.min())
    inside = arr != floor
    lab, n = ndi.label(inside)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        inside = lab == int(np.argmax(sizes))
    filled = np.asarray(ndi.binary_fill_holes(inside), dtype=bool)
    outside = ~filled
    exact = float(np.mean(arr[outside] == floor)) if outside.any() else 0.0
    return filled, exact


def skull_stripped(vol: Volume) -> tuple[bool, str]:
    """Whether an image is a skull-stripped brain, and why (the rule, with the numbers).

    Rule: (1) at least 20 % of the field of view is background; (2) at least 99 % of the voxels
    outside the image's support hold exactly the background value (a scanner image carries noise
    there; skull stripping writes an exact constant); (3) the support is one brain-sized object,
    0.4–2.2 L (a whole head with scalp and skull is ≥ 2.5 L; a cut field of view of a stripped brain
    can fall below 0.4 L and is then handled as a head, where the coverage guard refuses it).
    """
    mask, exact = support(vol)
    total = mask.size
    outside = 1.0 - float(mask.sum()) / float(total)
    ml = float(mask.sum()) * float(np.prod(vol.spacing)) / 1000.0
    lo, hi = STRIPPED_SUPPORT_ML
    numbers = f"support {ml:.0f} mL, background {100 * outside:.0f} % of the field of view, {100 * exact:.1f} % exact"
    if outside < _STRIPPED_MIN_OUTSIDE:
        return False, f"not stripped: {numbers} (needs ≥ {100 * _STRIPPED_MIN_OUTSIDE:.0f} % background)"
    if exact < _STRIPPED_BACKGROUND:
        return False, f"not stripped: {numbers} (a noisy background: an unstripped scan)"
    if not lo <= ml <= hi:
        return False, f"not stripped: {numbers} (a brain is {lo:.0f}–{hi:.0f} mL)"
    return True, f"skull-stripped: {numbers}"


def brain_mask_on_grid(resampled: Mapping[str, F32Array]) -> BoolArray:
    prior = _template_mask_on_grid()
    background = np.ones(prior.shape, dtype=bool)
    for arr in resampled.values():
        inside = arr[prior]
        med = float(np.median(inside[inside > 0])) if np.any(inside > 0) else 0.0
        background &= arr < _BACKGROUND_FRACTION * med
    mask = prior & ~background
    lab, n = ndi.label(mask)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        mask = lab == int(np.argmax(sizes))
    filled = np.asarray(ndi.binary_fill_holes(mask), dtype=bool)
    return filled & prior


def _largest_filled(mask: BoolArray) -> BoolArray:
    lab, n = ndi.label(mask)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        mask = lab == int(np.argmax(sizes))
    return np.asarray(ndi.binary_fill_holes(mask), dtype=bool)


def normalise_channel(arr: F32Array, mask: BoolArray) -> F32Array:
    vals = arr[mask]
    if vals.size == 0:
        return np.zeros_like(arr)
    lo, hi = np.percentile(vals, [1.0, 99.0])
    clipped = np.clip(vals, lo, hi)
    mean, sd = float(clipped.mean()), float(clipped.std())
    if sd <= 0:
        sd = 1.0
    out = np.clip((arr - mean) / sd, -_CLIP, _CLIP).astype(np.float32)
    out[~mask] = 0.0
    return np.asarray(out, dtype=np.float32)


class _Debug:
    def __init__(self, root: Path | None) -> None:
        self.root = root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, data: npt.NDArray[np.generic], affine: FloatArray) -> None:
        if self.root is None:
            return
        from neuronav.volume.nifti import save_nifti

        arr = data.astype(np.uint8) if data.dtype == np.bool_ else data
        save_nifti(Volume(data=arr, affine=affine), self.root / f"{name}.nii.gz")

    def grid(self, name: str, data: npt.NDArray[np.generic]) -> None:
        self.save(name, data, WORKING_GRID.affine)


def preprocess(
    volumes: Mapping[str, Volume],
    *,
    reference: str | None = None,
    debug_dir: Path | None = None,
    progress: ProgressFn | None = None,
) -> Preprocessed:
    """Register, resample, mask, bias-correct and normalise the sequences of one study.

    ``volumes``: keys T1, T1c, T2, FLAIR (case-insensitive; other keys are ignored), at least one of
    T1c, FLAIR or T2. ``reference`` (default T1c, else FLAIR, else T2, else T1) defines the world
    frame and the grid that :meth:`Preprocessed.to_reference` writes back onto.
    Raises :class:`~neuronav.errors.InputError` for missing sequences or images that do not look
    like a brain MRI.
    """
    chosen, ref = _select(volumes, reference)
    for name, vol in chosen.items():
        _check_looks_like_mri(name, vol)
    names = [ref] + [n for n in SEQUENCES if n in chosen and n != ref]
    timings: dict[str, float] = {}
    metrics: dict[str, float] = {}
    dbg = _Debug(debug_dir)

    def step(label: str, frac: float) -> None:
        if progress is not None:
            progress(label, frac)

    # 1. reorient (no resampling) and anti-alias once for sampling at 2 mm
    step("reorient", 0.0)
    t0 = time.perf_counter()
    canon: dict[str, Volume] = {n: chosen[n].canonical() for n in names}
    smooth: dict[str, F32Array] = {}
    for n in names:
        smooth[n] = reg.smooth_for(_to_float(canon[n]), canon[n].affine, WORKING_GRID.spacing[0])
    regimg = {n: reg.make_reg_image(canon[n].data, canon[n].affine, smoothed=smooth[n]) for n in names}
    verdicts = {n: skull_stripped(canon[n]) for n in names}
    stripped = all(v[0] for v in verdicts.values())
    for n, (_, why) in verdicts.items():
        log.info("preprocess: %s %s", n, why)
    metrics["skull_stripped"] = float(stripped)
    timings["reorient"] = time.perf_counter() - t0
    for n in names:
        dbg.save(f"01_reoriented_{n}", _to_float(canon[n]), canon[n].affine)

    # 2. rigid co-registration onto the reference
    step("coregister", 0.1)
    t0 = time.perf_counter()
    coreg: dict[str, FloatArray] = {ref: np.eye(4)}
    for i, n in enumerate(names[1:]):
        res = reg.rigid_coregister(regimg[ref], regimg[n])
        coreg[n] = res.moving_to_fixed
        metrics[f"coreg_{n}_identity"] = res.metric_identity
        metrics[f"coreg_{n}_final"] = res.metric_final
        step("coregister", 0.1 + 0.3 * (i + 1) / max(len(names) - 1, 1))
    timings["coregister"] = time.perf_counter() - t0
    if debug_dir is not None:
        rc = canon[ref]
        for n in names[1:]:
            ref_to_n = np.asarray(np.linalg.inv(coreg[n]), dtype=np.float64)
            on_ref = reg.resample(smooth[n], canon[n].affine, rc.shape, rc.affine, ref_to_n)
            dbg.save(f"02_coregistered_{n}", on_ref, rc.affine)

    # 3. affine registration to MNI152 (T1 when present: the template is a T1)
    step("register to MNI152", 0.4)
    t0 = time.perf_counter()
    driver = "T1" if "T1" in names else ref
    try:
        mres = reg.register_to_mni(regimg[driver], brain_only=stripped)
    except reg.RegistrationError as exc:
        raise InputError(f"{driver} does not look like a brain MRI: registration to MNI152 failed ({exc})") from exc
    metrics["mni"] = mres.metric
    metrics["mni_interior"] = mres.interior_metric
    if -mres.interior_metric < _MIN_INTERIOR_MI:
        raise InputError(
            f"{driver} does not look like a brain MRI: it does not match the MNI152 brain template "
            f"(mutual information inside the brain {-mres.interior_metric:.3f}, needs ≥ {_MIN_INTERIOR_MI})"
        )
    # MNI → driver world → reference world
    mni_to_world = np.asarray(coreg[driver] @ mres.mni_to_world, dtype=np.float64)
    world_to_mni = np.asarray(np.linalg.inv(mni_to_world), dtype=np.float64)
    timings["register_mni"] = time.perf_counter() - t0

    step("resample", 0.6)
    t0 = time.perf_counter()
    resampled: dict[str, F32Array] = {}
    for n in names:
        # working voxel → MNI → reference world → this sequence's world → its voxel
        to_src = np.asarray(np.linalg.inv(coreg[n]) @ mni_to_world, dtype=np.float64)
        resampled[n] = np.asarray(
            reg.resample(smooth[n], canon[n].affine, WORKING_GRID.shape, WORKING_GRID.affine, to_src), dtype=np.float32
        )
        dbg.grid(f"03_mni_{n}", resampled[n])
    timings["resample"] = time.perf_counter() - t0

    # 4. brain mask
    step("brain mask", 0.7)
    t0 = time.perf_counter()
    if stripped:
        # the images' own support (of every sequence: where all of them hold brain) on the working grid
        mask = np.ones(WORKING_GRID.shape, dtype=bool)
        for n in names:
            to_src = np.asarray(np.linalg.inv(coreg[n]) @ mni_to_world, dtype=np.float64)
            sup = support(canon[n])[0].astype(np.float32)
            on_grid = reg.resample(sup, canon[n].affine, WORKING_GRID.shape, WORKING_GRID.affine, to_src)
            mask &= np.asarray(on_grid, dtype=np.float32) > 0.5
        mask = _largest_filled(mask)
    else:
        mask = brain_mask_on_grid(resampled)
    timings["brain_mask"] = time.perf_counter() - t0
    dbg.grid("brain_mask", mask)
    coverage = float(mask.sum()) / float(_template_mask_on_grid().sum())
    metrics["brain_coverage"] = coverage
    if coverage < MIN_BRAIN_COVERAGE:
        raise InputError(
            f"the images cover only {100 * coverage:.0f} % of the brain; tumour detection needs a whole-brain "
            f"acquisition (at least {100 * MIN_BRAIN_COVERAGE:.0f} %)"
        )

    # 5. bias field, 6. normalisation
    step("bias field", 0.75)
    t0 = time.perf_counter()
    corrected = {}
    for i, n in enumerate(names):
        corrected[n] = reg.n4_bias_correct(resampled[n], mask)
        dbg.grid(f"04_biascorrected_{n}", corrected[n])
        step("bias field", 0.75 + 0.2 * (i + 1) / len(names))
    timings["bias_field"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    channels = {n: normalise_channel(corrected[n], mask) for n in names}
    for n in names:
        dbg.grid(f"05_normalised_{n}", channels[n])
    timings["normalise"] = time.perf_counter() - t0
    timings["total"] = sum(timings.values())

    result = Preprocessed(
        channels=channels,
        brain_mask=mask,
        reference=ref,
        reference_volume=chosen[ref],
        world_to_mni=world_to_mni,
        coreg=coreg,
        timings=timings,
        metrics=metrics,
        skull_stripped=stripped,
    )
    if debug_dir is not None:
        doc = {
            "reference": ref,
            "mni_driver": driver,
            "skull_stripped": {n: why for n, (_, why) in verdicts.items()},
            "working_grid": {"shape": list(WORKING_GRID.shape), "affine": WORKING_GRID.affine.tolist()},
            "world_to_mni": world_to_mni.tolist(),
            "coreg": {n: m.tolist() for n, m in coreg.items()},
            "metrics": metrics,
            "timings_s": timings,
            "brain_mask_ml": float(mask.sum()) * WORKING_GRID.voxel_volume_ml,
        }
        (debug_dir / "preprocess.json").write_text(json.dumps(doc, indent=2))
    log.info("preprocess: %s", ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    step("preprocess done", 1.0)
    return result
