"""Training cases for the segmentation network, made from phantom heads in memory.

A case is what :func:`neuronav.analysis.preprocess.preprocess` would hand the network for a phantom
study: the four sequences on the 2 mm working grid in MNI space, with the brain mask, N4 and the
z-score of inference, and the BraTS labels on the same grid. Instead of writing DICOM and
registering it back (slow), each sequence is rendered in template space and resampled once into
the working grid through a random small affine (the residual error of a real registration).
Domain randomisation on top of the phantom's own: contrast tables (jittered per subject by the
phantom, then a random gamma), bias-field strength, noise level, thick-slice acquisitions along a
random axis, misregistration, and the lesion type, size, shape and position from the seed.
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


@dataclass(frozen=True)
class Case:
    images: npt.NDArray[np.float16]  # (4, X, Y, Z), channels in SEQUENCES order
    labels: npt.NDArray[np.uint8]  # (X, Y, Z) BraTS labels
    brain_mask: npt.NDArray[np.bool_]
    lesion: str
    seed: int


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
    rng: np.random.Generator, max_deg: float = 4.0, max_mm: float = 4.0
) -> npt.NDArray[np.float64]:
    """A 4×4 world→world affine: small rotation, translation and anisotropic scale."""
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    rot = Rotation.from_euler("xyz", rng.uniform(-max_deg, max_deg, 3), degrees=True).as_matrix()
    m[:3, :3] = rot @ np.diag(rng.uniform(0.96, 1.04, 3))
    m[:3, 3] = rng.uniform(-max_mm, max_mm, 3)
    return m


def make_case(seed: int, lesion: str | None = None) -> Case:
    """Render one training case (deterministic in ``seed``)."""
    from scipy import ndimage

    from neuronav.phantom import add_rician_noise, apply_bias, bias_field, render, simulate_subject

    lesion = lesion or lesion_for(seed)
    subject = simulate_subject(seed, lesion)
    anatomy = subject.anatomy
    rng = np.random.default_rng([seed, 1])
    world_to_src = random_misregistration(rng)
    resampled: dict[str, npt.NDArray[np.float32]] = {}
    for seq in SEQUENCES:
        world = render(seq, subject.contrast, anatomy, subject.tissue, subject.rasters)
        apply_bias(world, bias_field(rng, anatomy, strength=float(rng.uniform(0.03, 0.3))))
        if rng.uniform() < 0.5:  # a thick-slice 2D acquisition along a random axis
            thickness = float(rng.uniform(3.0, 6.5))
            ndimage.gaussian_filter1d(world, thickness / np.sqrt(12.0), axis=int(rng.integers(3)), output=world)
        table = subject.contrast.tables[seq]
        ref = max(table["wm"], table["gm"], table["csf"])
        world = add_rician_noise(world, float(rng.uniform(0.01, 0.06)) * ref, rng)
        world = np.power(np.maximum(world, 0.0) / ref, np.float32(rng.uniform(0.8, 1.25))).astype(np.float32)
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
    channels = [normalise_channel(reg.n4_bias_correct(resampled[s], mask), mask) for s in SEQUENCES]
    labels[~mask] = 0
    return Case(np.stack(channels).astype(np.float16), labels, mask, lesion, seed)


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
    np.savez(tmp, images=case.images, labels=case.labels, mask=case.brain_mask, lesion=case.lesion, seed=seed)
    tmp.replace(path)


def load_case(path: Path) -> Case:
    with np.load(path) as z:
        return Case(z["images"], z["labels"], z["mask"], str(z["lesion"]), int(z["seed"]))
