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

And the other way, what a peer's C-STORE status means for a delivery of the outbox
(:func:`store_outcome`, PS3.4 B.2.3 and PS3.7 C):

========================================  ==========  ==========================================
peer's status                             outcome     why
========================================  ==========  ==========================================
0x0000 Success, 0xB000-0xBFFF Warning     delivered   stored (a warning: coerced, still stored)
0xA700-0xA7FF Out of Resources, 0x0213
  Resource limitation, 0x0110 Processing
  failure                                 retry       the peer may take it later
anything else (0xA900 not the SOP class,
  0xC000-0xCFFF cannot understand, 0x0122
  SOP class not supported, 0x0124 not
  authorised, …)                          failed      sending it again will not help: an admin looks
========================================  ==========  ==========================================

A failure status carries an ErrorComment (at most 64 characters, the error's class and no patient data:
an error message may quote a file's content).
"""

from __future__ import annotations

from typing import Literal

from pydicom.dataset import Dataset

from neuronav.errors import InputError
from neuronav.storage.errors import StorageError, UploadTooLargeError

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
# C-FIND (PS3.4 C.4.1.1.4)
PENDING = 0xFF00
CANCEL = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900  # Identifier does not match SOP Class
UNABLE_TO_PROCESS = 0xC001  # Unable to process (failure)


def status_code(exc: BaseException) -> int:
    """The C-STORE status for ``exc`` (the table above)."""
    if isinstance(exc, UploadTooLargeError | StorageError):
        return OUT_OF_RESOURCES
    if isinstance(exc, InputError):
        return CANNOT_UNDERSTAND
    return PROCESSING_FAILURE


def store_outcome(status: int) -> Literal["delivered", "retry", "failed"]:
    """What a peer's C-STORE response ``status`` means for an outbox delivery (the second table above)."""
    if status == SUCCESS or 0xB000 <= status <= 0xBFFF:
        return "delivered"
    if 0xA700 <= status <= 0xA7FF or status in (0x0213, PROCESSING_FAILURE):
        return "retry"
    return "failed"


def failure_status(exc: BaseException) -> Dataset:
    """A C-STORE response status data set for ``exc``: Status and an ErrorComment without patient data."""
    status = Dataset()
    status.Status = status_code(exc)
    status.ErrorComment = f"NeuroNav: {type(exc).__name__}"[:64]
    return status


__all__ = [
    "CANNOT_UNDERSTAND",
    "OUT_OF_RESOURCES",
    "PROCESSING_FAILURE",
    "SUCCESS",
    "failure_status",
    "status_code",
    "store_outcome",
]
