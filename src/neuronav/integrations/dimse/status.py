"""NeuroNav errors → DICOM statuses of a C-STORE response, in this one place (PS3.4 Annex B.2.3, PS3.7 C).

========================================  ==========  ==========================================
error                                     status      meaning
========================================  ==========  ==========================================
(stored, or stored before)                0x0000      Success
UploadTooLargeError (instance over the
  size limit, association over its volume)  0xA700    Refused: Out of Resources
StorageError (the store cannot write)     0xA700      Refused: Out of Resources
InputError (not acceptable DICOM: read,
  truncated, hostile; the same checks as
  an upload's files)                      0xC000      Error: Cannot understand
any other NeuroNavError / unexpected      0x0110      Processing failure
========================================  ==========  ==========================================

A failure status carries an ErrorComment (at most 64 characters, the error's class and no patient data:
an error message may quote a file's content).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from neuronav.errors import InputError
from neuronav.storage.errors import StorageError, UploadTooLargeError

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110


def status_code(exc: BaseException) -> int:
    """The C-STORE status for ``exc`` (the table above)."""
    if isinstance(exc, UploadTooLargeError | StorageError):
        return OUT_OF_RESOURCES
    if isinstance(exc, InputError):
        return CANNOT_UNDERSTAND
    return PROCESSING_FAILURE


def failure_status(exc: BaseException) -> Dataset:
    """A C-STORE response status data set for ``exc``: Status and an ErrorComment without patient data."""
    status = Dataset()
    status.Status = status_code(exc)
    status.ErrorComment = f"NeuroNav: {type(exc).__name__}"[:64]
    return status


__all__ = ["CANNOT_UNDERSTAND", "OUT_OF_RESOURCES", "PROCESSING_FAILURE", "SUCCESS", "failure_status", "status_code"]
