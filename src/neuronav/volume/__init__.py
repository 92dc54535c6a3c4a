"""Volumes: a 3D array that always travels with its affine (voxel index → RAS millimetres).

- :class:`Volume` – the type every later stage consumes.
- :func:`volume_from_series` – DICOM series → Volume (geometry from ImagePositionPatient /
  ImageOrientationPatient, spacing from positions, rescale applied, multi-frame aware; Siemens
  mosaics unpacked, Philips precise scaling, multi-echo / multi-phase series split as dcm2niix does:
  ``neuronav.volume.dicom.volumes_from_series`` gives every volume).
- :func:`load_nifti` / :func:`save_nifti` – NIfTI in and out.
- :func:`write_dicom_series` – Volume → DICOM series (used for phantoms and tests).
"""

from neuronav.volume.core import Volume, lps_to_ras, ras_to_lps
from neuronav.volume.nifti import load_nifti, save_nifti

__all__ = ["Volume", "load_nifti", "lps_to_ras", "ras_to_lps", "save_nifti"]


def __getattr__(name: str) -> object:  # lazy: keeps `import neuronav.volume` light
    if name == "volume_from_series":
        from neuronav.volume.dicom import volume_from_series

        return volume_from_series
    if name == "write_dicom_series":
        from neuronav.volume.dicom_write import write_dicom_series

        return write_dicom_series
    raise AttributeError(name)
