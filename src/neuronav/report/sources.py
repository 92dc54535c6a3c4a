"""The source DICOM images a DICOM output refers to: the reference series of the analysis.

DICOM SEG, SR, Encapsulated PDF and Secondary Capture objects join the patient and study of the
source images and reference them by UID. :func:`load_source_series` reads the reference series'
datasets in the slice order ``k`` of the analysis grid (``segmentation.nii.gz``), so slice ``k`` of
the label map belongs to ``datasets[k]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset

from neuronav.errors import NeuroNavError, ReportError
from neuronav.findings import Findings
from neuronav.ingest import Series, scan
from neuronav.ingest.sources import SourceReader


@dataclass(frozen=True)
class SourceSeries:
    datasets: list[Dataset]  # one per slice, in the slice order k of the analysis grid
    affine: npt.NDArray[np.float64]  # voxel (i, j, k) → RAS mm of the analysis grid
    series_instance_uid: str

    @property
    def first(self) -> Dataset:
        return self.datasets[0]


def load_source_series(series: Series) -> SourceSeries:
    """Every instance of ``series`` read in full, ordered as the volume's slices (k)."""
    from neuronav.volume.dicom import volume_from_series

    if any(inst.number_of_frames > 1 for inst in series.instances):
        raise ReportError(
            f"series {series.series_instance_uid}: DICOM outputs for multi-frame (enhanced) source series "
            "are not supported yet; JSON, PDF, FHIR and HL7 outputs are"
        )
    try:
        volume = volume_from_series(series)
    except NeuroNavError as exc:
        raise ReportError(f"the reference series cannot be read again: {exc}") from exc
    by_uid = {inst.sop_instance_uid: inst for inst in series.instances}
    datasets: list[Dataset] = []
    with SourceReader() as reader:
        for uid in volume.source_uids:
            inst = by_uid[uid]
            datasets.append(pydicom.dcmread(BytesIO(reader.read(inst.source)), force=False, stop_before_pixels=True))
    return SourceSeries(datasets=datasets, affine=volume.affine, series_instance_uid=series.series_instance_uid)


def find_reference_series(paths: Sequence[str | Path], findings: Findings) -> Series:
    """The analysed reference series among DICOM ``paths``; ReportError when it is not there."""
    uid = findings.study.reference_series_uid
    if findings.study.input_kind != "dicom" or not uid:
        raise ReportError(
            "this analysis was made from NIfTI files: DICOM SEG, SR, Encapsulated PDF and Secondary Capture "
            "need the source DICOM series; analyse the DICOM study instead"
        )
    inv = scan(list(paths))
    for series in inv.all_series:
        if series.series_instance_uid == uid:
            return series
    raise ReportError(
        f"the reference series {uid} ({findings.study.reference_sequence}) of this analysis is not among the DICOM "
        f"files given ({inv.n_instances} images in {len(inv.all_series)} series)"
    )
