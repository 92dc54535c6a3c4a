"""DICOM series → :class:`Volume` with exact geometry.

Orientation comes from ImageOrientationPatient, slice order and spacing from the projections of
ImagePositionPatient on the slice normal (never from SliceThickness), rescale slope/intercept are
applied per slice, and enhanced multi-frame objects use their per-frame functional groups.
Series that cannot form one regular volume (missing slices, uneven spacing, mixed orientations,
repeated positions) raise :class:`GeometryError` saying exactly what is wrong.

What scanners send, handled as dcm2niix handles it (each compared with dcm2niix in the tests):
a series of several echoes or phases is split into one volume per echo and phase
(:func:`split_series`, :func:`volumes_from_series`; :func:`volume_from_series` gives the first);
a Siemens mosaic is unpacked into its slices (:func:`_mosaic_volume`); Philips images with the
private MR Scale Slope get the precise values (:func:`_scaling`); three-sample images that hold a
grey image (RGB, YBR, uncompressed YBR_FULL_422 included) are read as their luminance.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset

from neuronav.errors import DicomReadError, GeometryError
from neuronav.ingest.limits import DEFAULT_LIMITS, Limits
from neuronav.ingest.model import Instance, Series
from neuronav.ingest.reader import float_or, float_tuple
from neuronav.ingest.sources import SourceReader
from neuronav.volume.core import Volume, lps_to_ras

ORIENTATION_TOLERANCE = 1e-3  # direction-cosine difference still called "the same orientation"
SPACING_TOLERANCE = 0.01  # relative deviation of one gap from the median gap


def _frame_geometry(
    orientation: Sequence[float], positions: npt.NDArray[np.float64], where: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp], float]:
    """Return (unit normal, order of slices along it, slice spacing); raise GeometryError."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01 or abs(row @ col) > 0.01:
        raise GeometryError("ImageOrientationPatient is not two orthogonal unit vectors", where)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    dist = positions @ normal
    order = np.argsort(dist, kind="stable")
    if len(order) < 2:
        return normal, order, 0.0
    sorted_dist = dist[order]
    gaps = np.diff(sorted_dist)
    if np.any(gaps < 1e-3):
        n = int(np.sum(gaps < 1e-3)) + 1
        raise GeometryError(
            f"{n} images share a slice position (several echoes, phases or acquisitions in one series); "
            "cannot form one volume",
            where,
        )
    spacing = float(np.median(gaps))
    bad = np.abs(gaps - spacing) > max(SPACING_TOLERANCE * spacing, 1e-3)
    if np.any(bad):
        first = int(np.argmax(bad))
        gap = float(gaps[first])
        ratio = gap / spacing
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
            missing = round(ratio) - 1
            raise GeometryError(
                f"missing slices: {missing} slice(s) missing between positions {sorted_dist[first]:.2f} and "
                f"{sorted_dist[first + 1]:.2f} mm (gap {gap:.2f} mm, spacing {spacing:.2f} mm)",
                where,
            )
        raise GeometryError(
            f"non-uniform slice spacing: gaps from {float(gaps.min()):.3f} to {float(gaps.max()):.3f} mm "
            f"(median {spacing:.3f} mm)",
            where,
        )
    # positions must lie on the normal through the first slice (no in-plane shift between slices)
    in_plane = positions[order] - positions[order[0]] - np.outer(sorted_dist - sorted_dist[0], normal)
    if np.max(np.abs(in_plane)) > max(0.01 * spacing, 0.01):
        raise GeometryError("slices are shifted within their plane (gantry tilt or sheared stack)", where)
    return normal, order, spacing


def _check_orientations(instances: Sequence[Instance], where: str) -> tuple[float, ...]:
    orientations = [i.image_orientation for i in instances]
    if any(o is None for o in orientations):
        raise GeometryError("an image lacks ImageOrientationPatient", where)
    ref = np.asarray(orientations[0])
    for o in orientations[1:]:
        if np.max(np.abs(np.asarray(o) - ref)) > ORIENTATION_TOLERANCE:
            raise GeometryError(
                "mixed orientations within one series (e.g. a 3-plane localizer); cannot form one volume", where
            )
    return tuple(float(v) for v in ref)


def _position_key(inst: Instance) -> tuple[float, ...] | None:
    return None if inst.image_position is None else tuple(round(v, 3) for v in inst.image_position)


def split_series(series: Series) -> list[Series]:
    """The volumes one series holds, as dcm2niix splits them: one part per echo (EchoNumbers; dcm2niix's
    ``_e1``, ``_e2`` … files), and within an echo whose images repeat slice positions, one part per phase
    (TemporalPositionIdentifier, else AcquisitionNumber, else the n-th image of each position in
    InstanceNumber order; the volumes of dcm2niix's 4D output, in that order).

    A series that holds one volume (or a multi-frame or mosaic object) is returned as it is.
    """
    instances = series.instances
    if len(instances) < 2 or any(i.number_of_frames > 1 or i.mosaic_images for i in instances):
        return [series]
    echoes: dict[int | None, list[Instance]] = {}
    for inst in instances:
        echoes.setdefault(inst.echo_number, []).append(inst)
    parts: list[list[Instance]] = []
    for echo in sorted(echoes, key=lambda e: (e is None, e or 0)):
        group = echoes[echo]
        keys = [_position_key(i) for i in group]
        if None in keys or len(set(keys)) == len(keys):
            parts.append(group)
            continue
        parts.extend(_phases(group))
    if len(parts) == 1:
        return [series]
    return [replace(series, instances=part) for part in parts]


def _phases(group: list[Instance]) -> list[list[Instance]]:
    """One echo's images whose slice positions repeat, split into phases (see :func:`split_series`)."""
    for attr in ("temporal_position", "acquisition_number"):
        values = [getattr(i, attr) for i in group]
        if None not in values and len(set(values)) > 1:
            by_value: dict[int, list[Instance]] = {}
            for inst, value in zip(group, values, strict=True):
                by_value.setdefault(value, []).append(inst)
            phases = [by_value[v] for v in sorted(by_value)]
            if all(len({_position_key(i) for i in p}) == len(p) for p in phases):
                return phases
    seen: dict[tuple[float, ...] | None, int] = {}
    by_occurrence: dict[int, list[Instance]] = {}
    for inst in sorted(group, key=lambda i: (i.instance_number or 0, i.sop_instance_uid)):
        key = _position_key(inst)
        n = seen[key] = seen.get(key, -1) + 1
        by_occurrence.setdefault(n, []).append(inst)
    return [by_occurrence[n] for n in sorted(by_occurrence)]


def check_series_geometry(series: Series) -> str | None:
    """Cheap check from header data only: None when the series can form a volume, else the problem.

    A series of several volumes (echoes, phases: :func:`split_series`) is checked volume by volume.
    """
    parts = split_series(series)
    if len(parts) > 1:
        for part in parts:
            problem = check_series_geometry(part)
            if problem:
                return problem
        return None
    where = f"series {series.series_instance_uid}"
    try:
        if len(series.instances) == 1 and series.instances[0].number_of_frames > 1:
            return None  # enhanced multi-frame: checked when the volume is built
        if any(i.mosaic_images for i in series.instances):
            return None  # Siemens mosaic: unpacked and checked when the volume is built
        orientation = _check_orientations(series.instances, where)
        if any(i.image_position is None for i in series.instances):
            raise GeometryError("an image lacks ImagePositionPatient", where)
        if any(i.number_of_frames != 1 for i in series.instances):
            raise GeometryError("several multi-frame objects in one series are not supported", where)
        positions = np.asarray([i.image_position for i in series.instances], dtype=np.float64)
        _frame_geometry(orientation, positions, where)
        shapes = {(i.rows, i.columns) for i in series.instances}
        if len(shapes) > 1:
            raise GeometryError(f"images of different sizes in one series: {sorted(shapes)}", where)
        spacings = {tuple(round(v, 4) for v in i.pixel_spacing) for i in series.instances if i.pixel_spacing}
        if len(spacings) > 1:
            raise GeometryError(f"images with different PixelSpacing in one series: {sorted(spacings)}", where)
    except GeometryError as exc:
        return exc.problem
    return None


def _affine(
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    origin: Sequence[float],
    normal: npt.NDArray[np.float64],
    slice_spacing: float,
) -> npt.NDArray[np.float64]:
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    aff = np.eye(4)
    aff[:3, 0] = row * float(pixel_spacing[1])  # i runs along a row: spacing between columns
    aff[:3, 1] = col * float(pixel_spacing[0])  # j runs down a column: spacing between rows
    aff[:3, 2] = normal * slice_spacing
    aff[:3, 3] = np.asarray(origin, dtype=np.float64)
    return lps_to_ras(aff)


def _decode(ds: Dataset, where: str) -> npt.NDArray[np.generic]:
    try:
        arr = np.asarray(ds.pixel_array)
        return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    except Exception as exc:  # decoders raise many types for corrupt streams
        ts = ds.file_meta.get("TransferSyntaxUID", "?") if hasattr(ds, "file_meta") else "?"
        raise DicomReadError(f"pixel data cannot be decoded (transfer syntax {ts}: {exc})", where) from exc


CHROMA_TOLERANCE = 1  # Cb, Cr within 128 ± 1 (or R, G, B within 1 of each other): a grey image


def _grey(ds: Dataset, where: str) -> npt.NDArray[np.generic]:
    """The intensities of a three-sample image that holds a grey image (some scanners and converters
    export MR as RGB or YBR, uncompressed YBR_FULL_422 included): its luminance. A colour image
    (real chroma) is refused: it is not an MR intensity image.
    """
    from pydicom.pixels.utils import pixel_array

    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    try:
        arr = np.asarray(pixel_array(ds, as_rgb=False))  # YBR stays YBR (expanded from 4:2:2): Y is luminance
    except Exception as exc:
        ts = ds.file_meta.get("TransferSyntaxUID", "?") if hasattr(ds, "file_meta") else "?"
        raise DicomReadError(f"pixel data cannot be decoded (transfer syntax {ts}: {exc})", where) from exc
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise DicomReadError(f"decoded {photometric} pixels have shape {arr.shape}, not rows × columns × 3", where)
    wide = arr.astype(np.int32)
    if photometric.startswith("YBR"):
        colour = np.abs(wide[..., 1:] - 128).max(initial=0)
    elif photometric == "RGB":
        colour = max(
            np.abs(wide[..., 0] - wide[..., 1]).max(initial=0), np.abs(wide[..., 1] - wide[..., 2]).max(initial=0)
        )
    else:
        raise DicomReadError(f"three samples per pixel with PhotometricInterpretation {photometric!r}", where)
    if colour > CHROMA_TOLERANCE:
        raise DicomReadError(f"a colour image ({photometric}), not an MR intensity image; refused", where)
    return np.ascontiguousarray(arr[..., 0])


def _native_dtype(inst: Instance) -> np.dtype[np.generic]:
    kind = "i" if inst.pixel_representation == 1 else "u"
    return np.dtype(f"<{kind}{inst.bits_allocated // 8}")


def _scaling(inst: Instance) -> tuple[float, float]:
    """(slope, intercept) from stored to volume values: Rescale Slope/Intercept, and for Philips images with
    a private MR Scale Slope SS the precise values (PV × RS + RI) / (RS × SS), as dcm2niix writes them."""
    slope, intercept = inst.rescale_slope, inst.rescale_intercept
    if inst.philips_scale_slope:
        div = slope * inst.philips_scale_slope
        return slope / div, intercept / div
    return slope, intercept


def _read_slice(inst: Instance, reader: SourceReader) -> npt.NDArray[np.generic]:
    """Pixels of one single-frame instance as [row, column]."""
    where = str(inst.source)
    if inst.pixel_offset is not None:  # native little-endian pixels at a known offset: no DICOM parsing
        dtype = _native_dtype(inst)
        count = inst.rows * inst.columns
        if inst.source.member is None:
            with open(inst.source.path, "rb") as fh:
                fh.seek(inst.pixel_offset)
                buf = fh.read(count * dtype.itemsize)
        else:  # a zip member: its bytes (size caps and CRC checked by the reader), from the offset
            buf = reader.read(inst.source)[inst.pixel_offset : inst.pixel_offset + count * dtype.itemsize]
        if len(buf) != count * dtype.itemsize:
            raise DicomReadError("file changed or truncated since it was scanned", where)
        return np.frombuffer(buf, dtype=dtype).reshape(inst.rows, inst.columns)
    data = reader.read(inst.source)
    ds = _dataset(data, where)
    arr = _grey(ds, where) if inst.samples_per_pixel == 3 else _decode(ds, where)
    if arr.shape != (inst.rows, inst.columns):
        raise DicomReadError(f"decoded pixels have shape {arr.shape}, expected {(inst.rows, inst.columns)}", where)
    return arr


def _dataset(data: bytes, where: str) -> Dataset:
    try:
        return dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise DicomReadError(f"cannot re-read file ({exc})", where) from exc


def volumes_from_series(series: Series, *, limits: Limits = DEFAULT_LIMITS) -> list[Volume]:
    """Every volume of a series: one per echo and phase (:func:`split_series`), in dcm2niix's order."""
    return [_volume(part, limits) for part in split_series(series)]


def volume_from_series(series: Series, *, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """Build the volume of a series. Raises GeometryError / DicomReadError with a precise reason.

    A series of several volumes (echoes, phases) gives its first: the first echo, the first phase
    (dcm2niix's ``_e1`` file, the first volume of its 4D file); :func:`volumes_from_series` gives all.
    """
    if not series.instances:
        raise GeometryError("series has no images", f"series {series.series_instance_uid}")
    return _volume(split_series(series)[0], limits)


def _volume(series: Series, limits: Limits) -> Volume:
    where = f"series {series.series_instance_uid}"
    if not series.instances:
        raise GeometryError("series has no images", where)
    with SourceReader(limits) as reader:
        if len(series.instances) == 1 and series.instances[0].number_of_frames > 1:
            return _multiframe_volume(series, reader, where)
        if any(i.mosaic_images for i in series.instances):
            return _mosaic_volume(series, reader, where)
        problem = check_series_geometry(series)
        if problem:
            raise GeometryError(problem, where)
        instances = series.instances
        orientation = _check_orientations(instances, where)
        positions = np.asarray([i.image_position for i in instances], dtype=np.float64)
        normal, order, spacing = _frame_geometry(orientation, positions, where)
        ordered = [instances[int(n)] for n in order]
        pixel_spacing = series.metadata.pixel_spacing
        if pixel_spacing is None or min(pixel_spacing) <= 0:
            raise GeometryError("PixelSpacing missing or not positive", where)
        if spacing == 0.0:
            spacing = series.metadata.spacing_between_slices or series.metadata.slice_thickness or 1.0
        # frames are stacked as (k, row, column), contiguous; the volume is its [i, j, k] view, which
        # is Fortran-contiguous: no strided copies here, and NIfTI (Fortran order) writes it as is
        first = _read_slice(ordered[0], reader)
        scaled = any(i.rescale_slope != 1.0 or i.rescale_intercept != 0.0 or i.philips_scale_slope for i in ordered)
        frames = np.empty((len(ordered), first.shape[0], first.shape[1]), np.float32 if scaled else first.dtype)
        for k, inst in enumerate(ordered):
            sl = first if k == 0 else _read_slice(inst, reader)
            if scaled:
                slope, intercept = _scaling(inst)
                np.multiply(sl, np.float32(slope), out=frames[k], casting="unsafe")
                frames[k] += np.float32(intercept)
            else:
                frames[k] = sl
        stack = frames.transpose(2, 1, 0)
        affine = _affine(orientation, pixel_spacing, ordered[0].image_position or (0, 0, 0), normal, spacing)
        return Volume(
            data=stack,
            affine=affine,
            source_uids=tuple(i.sop_instance_uid for i in ordered),
            series_uid=series.series_instance_uid,
        )


def _mosaic_volume(series: Series, reader: SourceReader, where: str) -> Volume:
    """A Siemens mosaic: one image holding N slices as tiles of a ceil(√N) × ceil(√N) grid, unpacked as
    dcm2niix unpacks it.

    Tile k (row-major) is slice k. ImagePositionPatient of a mosaic is the corner of the whole image;
    the first slice's corner is moved by half the difference between mosaic and tile size along the
    row and column directions. Slices follow the normal (row × column) at SpacingBetweenSlices (else
    SliceThickness). A series of several mosaics (a time series) gives its first volume (lowest
    InstanceNumber), the first 3D volume of dcm2niix's 4D output.
    """
    if not all(i.mosaic_images for i in series.instances):
        raise GeometryError("a series mixing mosaic and plain images", where)
    inst = min(series.instances, key=lambda i: (i.instance_number or 0, i.sop_instance_uid))
    n = int(inst.mosaic_images or 0)
    grid = math.ceil(math.sqrt(n))
    if inst.number_of_frames != 1 or inst.rows % grid or inst.columns % grid:
        raise GeometryError(
            f"mosaic of {n} slices on a {grid} × {grid} grid does not divide its {inst.rows} × {inst.columns} image",
            str(inst.source),
        )
    if inst.image_orientation is None or inst.image_position is None:
        raise GeometryError("a mosaic image lacks ImageOrientationPatient or ImagePositionPatient", where)
    pixel_spacing = inst.pixel_spacing or series.metadata.pixel_spacing
    if pixel_spacing is None or min(pixel_spacing) <= 0:
        raise GeometryError("PixelSpacing missing or not positive", where)
    tile_rows, tile_cols = inst.rows // grid, inst.columns // grid
    mosaic = _read_slice(inst, reader)
    tiles = np.stack(
        [
            mosaic[r * tile_rows : (r + 1) * tile_rows, c * tile_cols : (c + 1) * tile_cols]
            for r, c in (divmod(k, grid) for k in range(n))
        ]
    )
    slope, intercept = _scaling(inst)
    data: npt.NDArray[np.generic] = tiles
    if slope != 1.0 or intercept != 0.0:
        data = tiles.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    orientation = inst.image_orientation
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    origin = (
        np.asarray(inst.image_position, dtype=np.float64)
        + row * float(pixel_spacing[1]) * (inst.columns - tile_cols) / 2
        + col * float(pixel_spacing[0]) * (inst.rows - tile_rows) / 2
    )
    spacing = series.metadata.spacing_between_slices or series.metadata.slice_thickness or 1.0
    affine = _affine(orientation, pixel_spacing, tuple(origin), normal, float(spacing))
    return Volume(
        data=np.transpose(data, (2, 1, 0)),
        affine=affine,
        source_uids=(inst.sop_instance_uid,),
        series_uid=series.series_instance_uid,
    )


def _multiframe_volume(series: Series, reader: SourceReader, where: str) -> Volume:
    inst = series.instances[0]
    ds = _dataset(reader.read(inst.source), str(inst.source))
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame or len(per_frame) != inst.number_of_frames:
        raise GeometryError("enhanced multi-frame object without one functional group per frame", where)

    def group(frame: Dataset, name: str) -> Dataset | None:
        for holder in (frame, shared):
            seq = holder.get(name)
            if seq:
                return seq[0]  # type: ignore[no-any-return]
        return None

    orientations: list[tuple[float, ...]] = []
    positions: list[tuple[float, ...]] = []
    slopes, intercepts = [], []
    pixel_spacing: tuple[float, ...] | None = None
    for n, frame in enumerate(per_frame, start=1):
        po, pp, pm = (
            group(frame, "PlaneOrientationSequence"),
            group(frame, "PlanePositionSequence"),
            group(frame, "PixelMeasuresSequence"),
        )
        iop = float_tuple(po.get("ImageOrientationPatient") if po else None, 6)
        ipp = float_tuple(pp.get("ImagePositionPatient") if pp else None, 3)
        spacing_n = float_tuple(pm.get("PixelSpacing") if pm else None, 2)
        if iop is None or ipp is None or spacing_n is None or min(spacing_n) <= 0:
            raise GeometryError(
                f"frame {n} lacks a valid ImageOrientationPatient, ImagePositionPatient or PixelSpacing", where
            )
        if pixel_spacing is not None and np.max(np.abs(np.subtract(spacing_n, pixel_spacing))) > 1e-4:
            raise GeometryError("frames with different PixelSpacing in one multi-frame object", where)
        orientations.append(iop)
        positions.append(ipp)
        pixel_spacing = spacing_n
        pvt = group(frame, "PixelValueTransformationSequence")
        slope = float_or(pvt.get("RescaleSlope") if pvt else None, 1.0)
        slopes.append(slope if slope != 0 else 1.0)
        intercepts.append(float_or(pvt.get("RescaleIntercept") if pvt else None, 0.0))
    ref = np.asarray(orientations[0])
    if any(np.max(np.abs(np.asarray(o) - ref)) > ORIENTATION_TOLERANCE for o in orientations):
        raise GeometryError("mixed orientations within one multi-frame object", where)
    normal, order, spacing = _frame_geometry(orientations[0], np.asarray(positions), where)
    if spacing == 0.0:
        spacing = series.metadata.spacing_between_slices or series.metadata.slice_thickness or 1.0
    pixels = _decode(ds, str(inst.source))
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.shape != (inst.number_of_frames, inst.rows, inst.columns):
        raise DicomReadError(f"decoded pixels have shape {pixels.shape}", str(inst.source))
    slope_k = np.asarray(slopes, dtype=np.float32)[order]
    intercept_k = np.asarray(intercepts, dtype=np.float32)[order]
    frames = pixels[order]
    data: npt.NDArray[np.generic] = frames
    if np.any(slope_k != 1) or np.any(intercept_k != 0):
        data = frames.astype(np.float32) * slope_k[:, None, None] + intercept_k[:, None, None]
    if pixel_spacing is None:
        raise GeometryError("PixelSpacing missing", where)
    affine = _affine(orientations[0], pixel_spacing, positions[int(order[0])], normal, spacing)
    return Volume(
        data=np.transpose(data, (2, 1, 0)),
        affine=affine,
        source_uids=(inst.sop_instance_uid,),
        series_uid=series.series_instance_uid,
    )
