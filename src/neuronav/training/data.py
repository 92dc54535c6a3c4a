"""Training cases for the segmentation network, made from phantom heads in memory.

A case is what :func:`neuronav.analysis.preprocess.preprocess` would hand the network for a phantom
study: the four sequences on the 2 mm working grid in MNI space, with the brain mask, N4 and the
z-score of inference, and the BraTS labels on the same grid. Instead of writing DICOM and
registering it back (slow), each sequence is rendered in template space and resampled once into
the working grid through a random small affine (the residual error of a real registration).
Domain randomisation on top of the phantom's own: contrast tables (jittered per subject by the
phantom, then a random gamma), bias-field strength, noise level, thick-slice acquisitions along a
random axis, misregistration, and the lesion type, size, shape and position from the seed.

Broadened (``make_case(..., version=2)``; no shipped model uses it yet: see ``recipes``), drawn from
a stream of its own so that the draws above keep their values: skull-stripped cases (the phantom's
brain mask, as BraTS ships them), BraTS-like 1 mm isotropic acquisitions (no slice blur, low noise), random in-plane
resolution and slice thickness, motion ghosting along a random phase-encode axis, stronger bias and
noise, field-strength-like contrast changes and, in the SynthSeg spirit, fully random tissue and
lesion intensities in some cases (the network must then rely on shape and relative contrast), and
large mass effect (midline shift 5–15 mm, exact truth from the phantom).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from neuronav.analysis import registration as reg
from neuronav.analysis.grid import WORKING_GRID
from neuronav.analysis.preprocess import brain_mask_on_grid, normalise_channel

SEQUENCES = ("T1", "T1c", "T2", "FLAIR")
LESION_MIX = (("glioma", 0.35), ("meningioma", 0.25), ("metastasis", 0.25), ("none", 0.15))
# Training seeds start here; evaluation seeds (neuronav evaluate) are below 1,000,000 and disjoint.
TRAIN_SEED_BASE = 1_000_000
# the default, 1: the cases of the shipped 1.0.0 models (reproducible); 2: broadened (the docstring), opt-in
AUGMENTATION_VERSION = 1
P_SKULL_STRIPPED = 0.3
P_BRATS_1MM = 0.2
P_MOTION = 0.2
P_RANDOM_INTENSITIES = 0.2
P_LARGE_MASS = 0.15


@dataclass(frozen=True)
class Case:
    images: npt.NDArray[np.float16]  # (4, X, Y, Z), channels in SEQUENCES order
    labels: npt.NDArray[np.uint8]  # (X, Y, Z) BraTS labels
    brain_mask: npt.NDArray[np.bool_]
    lesion: str
    seed: int
    midline_shift_mm: float = 0.0  # truth: septum shift at its level (phantom septum_at_level_mm, + right)


def lesion_for(seed: int) -> str:
    """The lesion type of training case ``seed`` (a fixed mix, drawn from the seed)."""
    u = np.random.default_rng([seed, 7]).uniform()
    acc = 0.0
    for name, p in LESION_MIX:
        acc += p
        if u < acc:
            return name
    return LESION_MIX[-1][0]


def random_misregistration(
    rng: np.random.Generator, max_deg: float = 4.0, max_mm: float = 4.0, max_scale: float = 0.04
) -> npt.NDArray[np.float64]:
    """A 4×4 world→world affine: small rotation, translation and anisotropic scale."""
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    rot = Rotation.from_euler("xyz", rng.uniform(-max_deg, max_deg, 3), degrees=True).as_matrix()
    m[:3, :3] = rot @ np.diag(rng.uniform(1.0 - max_scale, 1.0 + max_scale, 3))
    m[:3, 3] = rng.uniform(-max_mm, max_mm, 3)
    return m


@dataclass(frozen=True)
class CaseStyle:
    """The acquisition-style draws of a broadened case (stream [seed, 2]; none of the other draws move)."""

    skull_stripped: bool
    brats_1mm: bool
    motion: bool
    random_intensities: bool
    large_mass_mm: float | None
    field_contrast: float  # < 1 flattens tissue contrast (like a low field), > 1 sharpens it
    misregistration: float = 1.0  # scale of the residual misregistration (±4°, ±4 mm, ±4 % at 1)


def case_style(seed: int, lesion: str, version: int = AUGMENTATION_VERSION) -> CaseStyle:
    if version < 2:
        return CaseStyle(False, False, False, False, None, 1.0)
    r = np.random.default_rng([seed, 2])
    u = r.uniform(size=5)
    return CaseStyle(
        skull_stripped=bool(u[0] < P_SKULL_STRIPPED),
        brats_1mm=bool(u[1] < P_BRATS_1MM),
        motion=bool(u[2] < P_MOTION),
        random_intensities=bool(u[3] < P_RANDOM_INTENSITIES),
        large_mass_mm=float(r.uniform(5.0, 15.0)) if lesion != "none" and u[4] < P_LARGE_MASS else None,
        field_contrast=float(r.uniform(0.75, 1.25)),
    )


def _randomise_tables(tables: dict[str, dict[str, float]], style: CaseStyle, rng: np.random.Generator) -> None:
    """Field-strength-like contrast (tissues pulled towards or pushed from their mean) and, for a
    SynthSeg-style case, independent random intensities per tissue and lesion compartment."""
    for t in tables.values():
        keys = [k for k in t if k != "air"]
        mean = float(np.mean([t[k] for k in ("wm", "gm", "csf")]))
        for k in keys:
            t[k] = max(mean + (t[k] - mean) * style.field_contrast, 0.02 * mean)
            if style.random_intensities:
                t[k] *= float(np.exp(rng.normal(0.0, 0.3)))


def _ghosts(world: npt.NDArray[np.float32], rng: np.random.Generator) -> None:
    """Motion ghosting: faint shifted copies along a random phase-encode axis, plus a slight blur."""
    from scipy import ndimage

    axis = int(rng.integers(3))
    ghost = np.zeros_like(world)
    for _ in range(int(rng.integers(1, 4))):
        ghost += np.roll(world, int(rng.integers(8, world.shape[axis] // 2)), axis=axis) * np.float32(
            rng.uniform(0.02, 0.08)
        )
    ndimage.gaussian_filter1d(world, float(rng.uniform(0.3, 1.2)), axis=axis, output=world)
    world += ghost


def make_case(
    seed: int, lesion: str | None = None, version: int = AUGMENTATION_VERSION, style: CaseStyle | None = None
) -> Case:
    """Render one training case (deterministic in ``seed``, ``version`` and ``style``: by default
    the seed's own draw, :func:`case_style`)."""
    from scipy import ndimage

    from neuronav.errors import InputError
    from neuronav.phantom import add_rician_noise, apply_bias, bias_field, render, simulate_subject
    from neuronav.phantom._anatomy import SEPTUM_MNI
    from neuronav.phantom._deform import septum_at_level_mm

    lesion = lesion or lesion_for(seed)
    style = style or case_style(seed, lesion, version)
    try:
        subject = simulate_subject(seed, lesion, midline_shift_mm=style.large_mass_mm)
    except InputError:  # no placement of this seed reaches the shift: its own mass effect
        subject = simulate_subject(seed, lesion)
    anatomy = subject.anatomy
    rng = np.random.default_rng([seed, 1])
    r2 = np.random.default_rng([seed, 3])
    if version >= 2:
        _randomise_tables(subject.contrast.tables, style, r2)
    strip = None
    if style.skull_stripped:
        strip = anatomy.brain | (subject.labels > 0)
    k = style.misregistration
    world_to_src = random_misregistration(rng, max_deg=4.0 * k, max_mm=4.0 * k, max_scale=0.04 * k)
    resampled: dict[str, npt.NDArray[np.float32]] = {}
    for seq in SEQUENCES:
        world = render(seq, subject.contrast, anatomy, subject.tissue, subject.rasters)
        strength = float(rng.uniform(0.03, 0.3)) * (float(r2.uniform(0.5, 1.8)) if version >= 2 else 1.0)
        apply_bias(world, bias_field(rng, anatomy, strength=strength))
        thick = rng.uniform() < 0.5
        if thick and not style.brats_1mm:  # a thick-slice 2D acquisition along a random axis
            thickness = float(rng.uniform(3.0, 6.5))
            ndimage.gaussian_filter1d(world, thickness / np.sqrt(12.0), axis=int(rng.integers(3)), output=world)
        elif thick:
            rng.uniform(3.0, 6.5), rng.integers(3)  # keep the stream aligned
        if version >= 2 and not style.brats_1mm and r2.uniform() < 0.5:  # in-plane resolution 1–2 mm
            sig = r2.uniform(0.2, 0.8, 3)
            sig[int(r2.integers(3))] = 0.0
            world = ndimage.gaussian_filter(world, sig).astype(np.float32)
        if style.motion:
            _ghosts(world, r2)
        table = subject.contrast.tables[seq]
        ref = max(table["wm"], table["gm"], table["csf"])
        noise = float(rng.uniform(0.01, 0.06))
        if version >= 2:
            noise *= 0.5 if style.brats_1mm else float(r2.uniform(0.7, 1.4))
        world = add_rician_noise(world, noise * ref, rng)
        world = np.power(np.maximum(world, 0.0) / ref, np.float32(rng.uniform(0.8, 1.25))).astype(np.float32)
        if strip is not None:
            world[~strip] = 0.0
        smooth = reg.smooth_for(world, anatomy.affine, WORKING_GRID.spacing[0])
        resampled[seq] = np.asarray(
            reg.resample(smooth, anatomy.affine, WORKING_GRID.shape, WORKING_GRID.affine, world_to_src),
            dtype=np.float32,
        )
    labels = np.asarray(
        reg.resample(subject.labels, anatomy.affine, WORKING_GRID.shape, WORKING_GRID.affine, world_to_src, order=0),
        dtype=np.uint8,
    )
    mask = brain_mask_on_grid(resampled)
    if strip is not None:  # a stripped brain: its own support is the mask (what BraTS ships)
        support = np.asarray(
            reg.resample(
                strip.astype(np.float32), anatomy.affine, WORKING_GRID.shape, WORKING_GRID.affine, world_to_src
            ),
            dtype=np.float32,
        )
        mask = support > 0.5
    channels = [normalise_channel(reg.n4_bias_correct(resampled[s], mask), mask) for s in SEQUENCES]
    labels[~mask] = 0
    shift = septum_at_level_mm(subject.sources, SEPTUM_MNI, anatomy)
    return Case(np.stack(channels).astype(np.float16), labels, mask, lesion, seed, shift)


def case_path(cache: Path, seed: int) -> Path:
    return cache / f"case-{seed}.npz"


def build_cache(
    cache: Path, seeds: list[int], *, workers: int = 1, progress: Callable[[int, int], None] | None = None
) -> list[Path]:
    """Render the cases that are not cached yet (``workers`` processes); return all case files."""
    cache.mkdir(parents=True, exist_ok=True)
    todo = [s for s in seeds if not case_path(cache, s).exists()]
    done = len(seeds) - len(todo)
    if progress is not None:
        progress(done, len(seeds))
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_case, [(cache, s) for s in todo]):
                done += 1
                if progress is not None:
                    progress(done, len(seeds))
    else:
        for s in todo:
            _write_case((cache, s))
            done += 1
            if progress is not None:
                progress(done, len(seeds))
    return [case_path(cache, s) for s in seeds]


def _write_case(args: tuple[Path, int]) -> None:
    cache, seed = args
    case = make_case(seed)
    path = case_path(cache, seed)
    tmp = path.with_name(f".{path.name}.partial.npz")
    np.savez(
        tmp,
        images=case.images,
        labels=case.labels,
        mask=case.brain_mask,
        lesion=case.lesion,
        seed=seed,
        midline_shift_mm=case.midline_shift_mm,
    )
    tmp.replace(path)


def load_case(path: Path) -> Case:
    with np.load(path) as z:
        shift = float(z["midline_shift_mm"]) if "midline_shift_mm" in z.files else 0.0
        return Case(z["images"], z["labels"], z["mask"], str(z["lesion"]), int(z["seed"]), shift)
