"""generate_study: one synthetic four-sequence brain MRI study with its ground truth."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from neuronav.errors import InputError
from neuronav.phantom._anatomy import SEPTUM_MNI, Anatomy, load_anatomy
from neuronav.phantom._deform import (
    MassSource,
    deform_tissue,
    forward_position,
    scale_to_shift,
    septum_at_level_mm,
)
from neuronav.phantom._dicom_meta import VENDORS, UidSource, series_attributes, study_attributes
from neuronav.phantom._geometry import (
    GEOMETRY_PROFILES,
    GeometryProfile,
    SeriesSpec,
    head_to_scanner,
    rotation_matrix,
    series_affine,
    slice_normal_axis,
)
from neuronav.phantom._lesions import (
    LesionRaster,
    LesionShape,
    calibrate,
    choose_shapes,
    mass_source,
    rasterise,
)
from neuronav.phantom._render import Contrast, add_rician_noise, apply_bias, bias_field, render
from neuronav.volume.core import Volume
from neuronav.volume.nifti import save_nifti

F64 = npt.NDArray[np.float64]
ProgressFn = Callable[[str, float], None]

LESION_TYPES: tuple[str, ...] = ("glioma", "meningioma", "metastasis", "none")
FORMATS: tuple[str, ...] = ("dicom", "nifti")
SCHEMA_VERSION = "1.0"
# Bump when the same arguments would produce different images or truth.
GENERATOR_VERSION = "1.0.0"
GENERATOR_NAME = "neuronav.phantom"

# Probability of a haemorrhage when the caller leaves it to the seed.
_HAEMORRHAGE_P = {"glioma": 0.3, "meningioma": 0.1, "metastasis": 0.3, "none": 0.0}

_LABEL_NAMES = {
    "0": "background",
    "1": "necrotic / non-enhancing tumour core",
    "2": "peritumoural oedema",
    "3": "enhancing tumour",
}


@dataclass(frozen=True)
class PhantomSeries:
    """One written series. ``path``: its DICOM folder or NIfTI file; ``label_path``: BraTS labels
    on exactly the same grid."""

    name: str
    path: Path
    label_path: Path
    geometry: str
    n_files: int


@dataclass(frozen=True)
class PhantomStudy:
    out_dir: Path
    truth: dict[str, Any]
    series: list[PhantomSeries]

    def series_named(self, name: str) -> PhantomSeries:
        for s in self.series:
            if s.name == name:
                return s
        raise KeyError(name)


# Range of the optional large mass effect (``midline_shift_mm``), magnitude in mm.
LARGE_SHIFT_RANGE_MM = (2.0, 18.0)


def _validate_shift(lesion: object, midline_shift_mm: object) -> None:
    if midline_shift_mm is None:
        return
    if isinstance(midline_shift_mm, bool) or not isinstance(midline_shift_mm, (int, float, np.floating, np.integer)):
        raise InputError(f"midline_shift_mm must be a number of millimetres, got {midline_shift_mm!r}")
    lo, hi = LARGE_SHIFT_RANGE_MM
    if not lo <= float(midline_shift_mm) <= hi:
        raise InputError(f"midline_shift_mm must lie between {lo:g} and {hi:g} mm, got {midline_shift_mm}")
    if lesion == "none":
        raise InputError("a midline shift needs a lesion; lesion 'none' cannot have one")


def _validate(seed: object, lesion: object, fmt: object, profile: object, haemorrhage: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be a whole number, got {seed!r}")
    if int(seed) < 0:
        raise InputError(f"seed must be zero or positive, got {seed}")
    if lesion not in LESION_TYPES:
        raise InputError(f"unknown lesion type {lesion!r}; choose one of {', '.join(LESION_TYPES)}")
    if fmt not in FORMATS:
        raise InputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if profile not in GEOMETRY_PROFILES:
        raise InputError(f"unknown geometry profile {profile!r}; choose one of {', '.join(GEOMETRY_PROFILES)}")
    if haemorrhage is not None and not isinstance(haemorrhage, bool):
        raise InputError(f"haemorrhage must be true, false or left unset, got {haemorrhage!r}")
    if haemorrhage and lesion == "none":
        raise InputError("a haemorrhage needs a lesion; lesion 'none' cannot have one")


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("the output path exists and is not a folder", str(out))
    if out.exists() and any(out.iterdir()):
        truth_file = out / "truth.json"
        previous = False
        if truth_file.is_file():
            try:
                previous = json.loads(truth_file.read_text()).get("generator", {}).get("name") == GENERATOR_NAME
            except (OSError, ValueError, AttributeError):
                previous = False
        if not previous:
            raise InputError("the output folder is not empty and holds no earlier phantom study", str(out))
        for sub in ("dicom", "nifti", "truth"):
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
        truth_file.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _geometry_text(spec: SeriesSpec) -> str:
    v = "×".join(f"{x:g}" for x in spec.voxel_mm)
    s = "×".join(str(x) for x in spec.shape)
    mf = ", multi-frame" if spec.multiframe else ""
    return f"{spec.acquisition} {spec.orientation} {v} mm, {s} voxels, {spec.slice_order}{mf}"


def _round(v: npt.ArrayLike, nd: int = 3) -> list[float]:
    return [round(float(x), nd) for x in np.asarray(v, dtype=np.float64).ravel()]


def _compose_labels(
    anatomy: Anatomy, rasters: list[LesionRaster]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """World label map and lesion-id map (1-based). Tumour labels win over another lesion's oedema."""
    labels = np.zeros(anatomy.shape, dtype=np.uint8)
    ids = np.zeros(anatomy.shape, dtype=np.uint8)
    for n, r in enumerate(rasters, start=1):
        cur = labels[r.box]
        new = r.labels
        take = (new > 0) & ((cur == 0) | ((cur == 2) & (new != 2)))
        cur[take] = new[take]
        ids[r.box][take] = n
    return labels, ids


def _report(progress: ProgressFn | None, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, min(max(fraction, 0.0), 1.0))


@dataclass(frozen=True)
class Subject:
    """A simulated head in template (MNI) space: lesions, deformed tissue, labels and contrast tables."""

    anatomy: Anatomy
    lesion: str
    shapes: list[LesionShape]
    sources: list[MassSource]
    tissue: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]
    rasters: list[LesionRaster]
    labels: npt.NDArray[np.uint8]
    ids: npt.NDArray[Any]
    contrast: Contrast
    has_haemorrhage: bool
    streams: tuple[np.random.Generator, ...]  # later stages draw from these: contrast, geometry, noise, metadata


def simulate_subject(
    seed: int,
    lesion: str,
    haemorrhage: bool | None = None,
    progress: ProgressFn | None = None,
    midline_shift_mm: float | None = None,
) -> Subject:
    """Lesions, mass effect and BraTS labels of one subject on the 1 mm template grid (no files).

    ``midline_shift_mm`` (magnitude, mm): a large mass effect. The lesion's mass (the inserted balls
    of the deformation) is grown by one common factor until the septum pellucidum moves by exactly
    that much, away from the mass; the truth is then the deformation's own displacement of the
    septum. None (the default) keeps the seed's own mass effect, so earlier studies are unchanged.
    If the seed's lesion lies on the midline or cannot push it that far, the lesion is drawn again
    from a stream of its own (the other random streams, and so contrast and geometry, are kept)."""
    _validate_shift(lesion, midline_shift_mm)
    anatomy = load_anatomy()
    root = np.random.default_rng(seed)
    r_lesion, r_haem, r_contrast, r_geom, r_noise, r_meta = root.spawn(6)

    has_haem = bool(r_haem.uniform() < _HAEMORRHAGE_P[lesion]) if haemorrhage is None else haemorrhage
    haem_fraction = float(r_haem.uniform(0.3, 0.7))

    _report(progress, "placing lesions", 0.05)
    shapes: list[LesionShape] = choose_shapes(r_lesion, anatomy, lesion, need_core=has_haem)
    if lesion == "glioma":
        shapes = [calibrate(s, anatomy, 4.0 / 3.0 * np.pi * float(np.prod(s.r_oedema)) / 1000.0) for s in shapes]
    sources: list[MassSource] = [mass_source(s, rasterise(s, anatomy, anatomy.wm, None)) for s in shapes]
    if midline_shift_mm is not None:
        shapes, sources = _large_mass(seed, anatomy, lesion, has_haem, shapes, sources, float(midline_shift_mm))

    _report(progress, "mass effect", 0.12)
    tissue = deform_tissue(anatomy, sources)
    haem_index = -1
    if has_haem and shapes:
        haem_index = int(
            np.argmax([float(np.prod(s.r_core)) if max(s.r_core) > 0 else -1.0 / (1 + n) for n, s in enumerate(shapes)])
        )
    rasters = [
        rasterise(s, anatomy, tissue[1], haem_fraction if n == haem_index else None) for n, s in enumerate(shapes)
    ]
    world_labels, ids = _compose_labels(anatomy, rasters)
    return Subject(
        anatomy=anatomy,
        lesion=lesion,
        shapes=shapes,
        sources=sources,
        tissue=tissue,
        rasters=rasters,
        labels=world_labels,
        ids=ids,
        contrast=Contrast(r_contrast, lesion),
        has_haemorrhage=has_haem,
        streams=(r_contrast, r_geom, r_noise, r_meta),
    )


def _large_mass(
    seed: int,
    anatomy: Anatomy,
    lesion: str,
    has_haem: bool,
    shapes: list[LesionShape],
    sources: list[MassSource],
    target_mm: float,
) -> tuple[list[LesionShape], list[MassSource]]:
    """Shapes and sources whose mass moves the septum by ``target_mm`` (see :func:`simulate_subject`)."""
    # a stream of its own (spawn key beyond the six of simulate_subject), so no other draw moves
    redraw = np.random.default_rng([seed, 0x5EB7])
    for attempt in range(40):
        lateral = all(abs(s.centre[0]) >= 8.0 for s in shapes) and len({np.sign(s.centre[0]) for s in shapes}) == 1
        if lateral:
            try:
                grown = scale_to_shift(sources, SEPTUM_MNI, target_mm, anatomy)
            except ValueError:
                grown = []
            if grown:
                # the push must cross the midline at the septum's level (a mass beside the lateral
                # ventricles), not mostly press the septum down or back: then the septal tissue and
                # the septum seen at the foramina of Monro are the same and the truth is unambiguous
                moved = forward_position(SEPTUM_MNI, grown, anatomy=anatomy) - SEPTUM_MNI
                if abs(moved[0]) >= 2.0 * float(np.linalg.norm(moved[1:])):
                    return shapes, grown
        shapes = choose_shapes(redraw, anatomy, lesion, need_core=has_haem)
        if lesion == "glioma":
            shapes = [calibrate(s, anatomy, 4.0 / 3.0 * np.pi * float(np.prod(s.r_oedema)) / 1000.0) for s in shapes]
        if lesion == "metastasis" and attempt < 39:  # one dominant metastasis carries the mass
            shapes = shapes[:1]
        sources = [mass_source(s, rasterise(s, anatomy, anatomy.wm, None)) for s in shapes]
    raise InputError(f"no {lesion} placement of this seed can shift the midline by {target_mm:g} mm; try another seed")


def generate_study(
    out_dir: str | Path,
    *,
    seed: int,
    lesion: str = "glioma",
    fmt: str = "dicom",
    haemorrhage: bool | None = None,
    profile: str = "clinical",
    progress: ProgressFn | None = None,
    midline_shift_mm: float | None = None,
) -> PhantomStudy:
    """Write a synthetic T1, T1c, T2 and FLAIR study and its ground truth into ``out_dir``.

    Layout: ``dicom/<NN>_<name>/IM*.dcm`` (or ``nifti/<name>.nii.gz``), ``truth/<name>_labels.nii.gz``
    (BraTS labels on each series' grid), ``truth/labels_1mm.nii.gz`` (the 1 mm label map the volumes
    are counted on) and ``truth.json``. The same arguments always give the same voxels, metadata and
    truth. ``midline_shift_mm`` asks for a large mass effect of that magnitude (see
    :func:`simulate_subject`; truth.json records the exact shift). Raises InputError for bad
    arguments or an output folder holding other files.
    """
    _validate(seed, lesion, fmt, profile, haemorrhage)
    _validate_shift(lesion, midline_shift_mm)
    seed = int(seed)
    out = Path(out_dir)
    _prepare_out_dir(out)
    geom: GeometryProfile = GEOMETRY_PROFILES[profile]

    _report(progress, "loading anatomy", 0.0)
    subject = simulate_subject(seed, lesion, haemorrhage, progress, midline_shift_mm)
    anatomy, shapes, sources, tissue, rasters = (
        subject.anatomy,
        subject.shapes,
        subject.sources,
        subject.tissue,
        subject.rasters,
    )
    world_labels, ids, r_geom, r_noise, r_meta = subject.labels, subject.ids, *subject.streams[1:]
    has_haem = subject.has_haemorrhage

    # Head pose in the scanner, and the scanner grids.
    centre = anatomy.head_centre
    angles = r_geom.uniform(-geom.max_rotation_deg, geom.max_rotation_deg, 3)
    offset = r_geom.uniform(-geom.max_offset_mm, geom.max_offset_mm, 3)
    rot = rotation_matrix(angles)
    head2scan = head_to_scanner(rot, centre)

    def to_scanner(p: F64) -> F64:
        return np.asarray(head2scan[:3, :3] @ p + head2scan[:3, 3], dtype=np.float64)

    _report(progress, "ground truth", 0.2)
    truth = _truth(
        seed=seed,
        lesion=lesion,
        profile=profile,
        fmt=fmt,
        anatomy=anatomy,
        shapes=shapes,
        rasters=rasters,
        world_labels=world_labels,
        ids=ids,
        sources=sources,
        angles=angles,
        rot=rot,
        centre=centre,
        to_scanner=to_scanner,
    )
    truth_dir = out / "truth"
    world_affine = head2scan @ anatomy.affine
    save_nifti(Volume(world_labels, world_affine), truth_dir / "labels_1mm.nii.gz")
    truth["label_map_1mm"] = "truth/labels_1mm.nii.gz"
    if truth["haemorrhage"]["present"]:
        haem_map = np.zeros(anatomy.shape, dtype=np.uint8)
        for r in rasters:
            if r.haemorrhage is not None:
                haem_map[r.box][r.haemorrhage] = 1
        save_nifti(Volume(haem_map, world_affine), truth_dir / "haemorrhage_1mm.nii.gz")
        truth["haemorrhage"]["mask"] = "truth/haemorrhage_1mm.nii.gz"

    contrast = subject.contrast
    vendor = str(r_meta.choice(VENDORS))
    uid_key = f"neuronav-phantom/{GENERATOR_VERSION}/{seed}/{lesion}/{has_haem}/{profile}"
    if midline_shift_mm is not None:
        uid_key += f"/shift{float(midline_shift_mm):g}"
    study_attrs = study_attributes(r_meta, seed, uid_key, vendor)
    inv_world = np.linalg.inv(anatomy.affine) @ np.linalg.inv(head2scan)
    written: list[PhantomSeries] = []
    series_truth: list[dict[str, Any]] = []
    n_series = len(geom.series)
    for pos, spec in enumerate(geom.series, start=1):
        base = 0.25 + 0.72 * (pos - 1) / n_series
        _report(progress, f"rendering {spec.name}", base)
        affine = series_affine(spec, centre + offset)
        image = _acquire(spec, affine, inv_world, contrast, anatomy, tissue, rasters, rot, r_noise)
        series_labels = _resample(world_labels, inv_world @ affine, spec.shape, order=0)
        _report(progress, f"writing {spec.name}", base + 0.72 / n_series * 0.6)
        attrs = series_attributes(r_meta, uid_key, vendor, spec.name, spec, pos, study_attrs)
        vol = Volume(image, affine, series_uid=attrs["SeriesInstanceUID"])
        if fmt == "dicom":
            from neuronav.volume.dicom_write import write_dicom_series

            path = out / "dicom" / f"{pos:02d}_{spec.name}"
            files = write_dicom_series(
                vol,
                path,
                study=study_attrs,
                series=attrs,
                slice_order=spec.slice_order,
                multiframe=spec.multiframe,
                uid_factory=UidSource(uid_key, f"sop/{spec.name}/{pos}"),
            )
            n_files = len(files)
        else:
            path = save_nifti(vol, out / "nifti" / f"{spec.name}.nii.gz")
            n_files = 1
        label_path = save_nifti(Volume(series_labels, affine), truth_dir / f"{spec.name}_labels.nii.gz")
        written.append(PhantomSeries(spec.name, path, label_path, _geometry_text(spec), n_files))
        series_truth.append(
            {
                "name": spec.name,
                "position": pos,
                "series_number": attrs["SeriesNumber"],
                "series_description": attrs["SeriesDescription"],
                "series_instance_uid": attrs["SeriesInstanceUID"],
                "path": str(path.relative_to(out)),
                "label_path": str(label_path.relative_to(out)),
                "orientation": spec.orientation,
                "orientation_codes": vol.orientation_codes,
                "acquisition": spec.acquisition,
                "voxel_size_mm": list(spec.voxel_mm),
                "shape": list(spec.shape),
                "slice_order": spec.slice_order,
                "multiframe": spec.multiframe,
                "affine": [_round(row, 6) for row in affine],
                "n_files": n_files,
                "tumour_voxels": int(np.count_nonzero(series_labels)),
            }
        )
    truth["series"] = series_truth
    if midline_shift_mm is not None:  # absent otherwise, so earlier studies' truth stays byte-identical
        truth["large_mass_effect_requested_mm"] = float(midline_shift_mm)
    truth["vendor_style"] = vendor
    truth["study_instance_uid"] = study_attrs["StudyInstanceUID"] if fmt == "dicom" else None
    _report(progress, "writing truth", 0.98)
    tmp = out / ".truth.json.partial"
    tmp.write_text(json.dumps(truth, indent=2) + "\n")
    tmp.replace(out / "truth.json")
    _report(progress, "done", 1.0)
    return PhantomStudy(out_dir=out, truth=truth, series=written)


def _resample(world: npt.NDArray[Any], vox2vox: F64, shape: tuple[int, int, int], order: int) -> npt.NDArray[Any]:
    from scipy import ndimage

    return np.asarray(
        ndimage.affine_transform(
            world,
            vox2vox[:3, :3],
            offset=vox2vox[:3, 3],
            output_shape=shape,
            order=order,
            mode="constant",
            cval=0,
            prefilter=False,
            output=world.dtype,
        )
    )


def _acquire(
    spec: SeriesSpec,
    affine: F64,
    inv_world: F64,
    contrast: Contrast,
    anatomy: Anatomy,
    tissue: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]],
    rasters: list[LesionRaster],
    rot: F64,
    rng: np.random.Generator,
) -> npt.NDArray[np.uint16]:
    """Render, bias, slice profile, resample, noise, scale: the stored pixel values of a series."""
    from scipy import ndimage

    world = render(spec.name, contrast, anatomy, tissue, rasters)
    apply_bias(world, bias_field(rng, anatomy))
    thickness = spec.voxel_mm[2]
    if thickness > 1.5:
        axis = slice_normal_axis(spec, rot)
        ndimage.gaussian_filter1d(world, thickness / np.sqrt(12.0), axis=axis, output=world, truncate=3.0)
    image = _resample(world, inv_world @ affine, spec.shape, order=1)
    del world
    table = contrast.tables[spec.name]
    ref = max(table["wm"], table["gm"], table["csf"])
    voxel_ml = float(np.prod(spec.voxel_mm))
    sigma = float(rng.uniform(0.015, 0.035)) * ref / np.sqrt(voxel_ml)
    image = add_rician_noise(image, sigma, rng)
    scale = float(rng.uniform(900.0, 2500.0)) / ref
    image *= np.float32(scale)
    np.rint(image, out=image)
    np.clip(image, 0, 32767, out=image)
    return image.astype(np.uint16)


def _truth(
    *,
    seed: int,
    lesion: str,
    profile: str,
    fmt: str,
    anatomy: Anatomy,
    shapes: list[LesionShape],
    rasters: list[LesionRaster],
    world_labels: npt.NDArray[np.uint8],
    ids: npt.NDArray[np.uint8],
    sources: list[MassSource],
    angles: F64,
    rot: F64,
    centre: F64,
    to_scanner: Callable[[F64], F64],
) -> dict[str, Any]:
    voxel_ml = float(abs(np.linalg.det(anatomy.affine[:3, :3]))) / 1000.0
    counts = np.bincount(world_labels.ravel(), minlength=4)[:4]
    v1, v2, v3 = (float(counts[k]) * voxel_ml for k in (1, 2, 3))
    volumes = {
        "label1": round(v1, 4),
        "label2": round(v2, 4),
        "label3": round(v3, 4),
        "whole_tumour": round(v1 + v2 + v3, 4),
        "tumour_core": round(v1 + v3, 4),
        "enhancing": round(v3, 4),
    }
    lesions: list[dict[str, Any]] = []
    all_idx: list[F64] = []
    haem_ml = 0.0
    for n, (shape, raster) in enumerate(zip(shapes, rasters, strict=True), start=1):
        mine = np.nonzero(ids[raster.box] == n)
        if len(mine[0]) == 0:
            continue
        start = np.array([sl.start for sl in raster.box], dtype=np.float64)
        idx = np.stack(mine, axis=1).astype(np.float64) + start
        all_idx.append(idx)
        c_template = anatomy.to_ras(idx.mean(axis=0))
        lab = world_labels[raster.box][mine]
        h_ml = float(np.count_nonzero(raster.haemorrhage)) * voxel_ml if raster.haemorrhage is not None else 0.0
        haem_ml += h_ml
        lesions.append(
            {
                "index": n,
                "type": shape.kind,
                "location": shape.location,
                "hemisphere": shape.hemisphere,
                "centroid_ras_mm": _round(to_scanner(c_template)),
                "centroid_template_mm": _round(c_template),
                "volume_ml": round(len(mine[0]) * voxel_ml, 4),
                "tumour_core_ml": round(float(np.count_nonzero((lab == 1) | (lab == 3))) * voxel_ml, 4),
                "haemorrhage_ml": round(h_ml, 4),
            }
        )
    wt_centroid = None
    if all_idx:
        c = anatomy.to_ras(np.concatenate(all_idx).mean(axis=0))
        wt_centroid = {"ras_mm": _round(to_scanner(c)), "template_mm": _round(c)}
    septum_after = forward_position(SEPTUM_MNI, sources, anatomy=anatomy) if sources else SEPTUM_MNI.copy()
    shift = float(septum_after[0] - SEPTUM_MNI[0])
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": GENERATOR_NAME, "version": GENERATOR_VERSION},
        "seed": seed,
        "profile": profile,
        "format": fmt,
        "lesion_type": lesion,
        "labels": _LABEL_NAMES,
        "coordinate_system": "RAS mm in the patient (scanner) frame of the written series; "
        "template_mm values are in the head's own MNI152 frame before head rotation",
        "volumes_ml": volumes,
        "volume_method": "voxel count of truth/labels_1mm.nii.gz × 0.001 mL",
        "lesion_count": len(lesions),
        "lesions": lesions,
        "whole_tumour_centroid": wt_centroid,
        "haemorrhage": {
            "present": haem_ml > 0,
            "volume_ml": round(haem_ml, 4),
            "note": "lies within label 1 (the dependent part of a necrotic core)",
        },
        "midline_shift_mm": round(shift, 3),
        "midline_shift_convention": "signed lateral displacement of the septum pellucidum at the level "
        "of the foramina of Monro, along the head's own left-right axis: positive towards the "
        "patient's right (+x in RAS), negative towards the left",
        "midline_shift_at_level_mm": round(septum_at_level_mm(sources, SEPTUM_MNI, anatomy), 3),
        "midline_shift_at_level_note": "x where the midsagittal septum sheet crosses the septum's own level "
        "(template y 4, z 12 mm) in the deformed head, minus 0: the shift a reader measures at the "
        "foramina of Monro in the image (midline_shift_mm follows the septal tissue point itself)",
        "midline_shift_reference": {
            "before_template_mm": _round(SEPTUM_MNI),
            "after_template_mm": _round(septum_after),
            "after_ras_mm": _round(to_scanner(septum_after)),
        },
        "mass_effect": [
            {
                "centre_template_mm": _round(s.centre),
                "inserted_radius_mm": round(s.radius_mm, 3),
                "taper_mm": round(s.taper_mm, 3),
            }
            for s in sources
        ],
        "head_rotation": {
            "angles_deg": _round(angles, 4),
            "axes": "about RAS x (pitch), y (roll), z (yaw); R = Rz·Ry·Rx",
            "centre_ras_mm": _round(centre),
            "matrix": [_round(row, 6) for row in rot],
        },
        "anatomy": "MNI152 2009 template grey/white matter maps and brain mask (nilearn), synthetic head",
    }
