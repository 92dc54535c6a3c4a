"""The error of a DICOM network exchange NeuroNav started (C-STORE SCU)."""

from __future__ import annotations

from typing import Literal

from neuronav.errors import NeuroNavError

Failure = Literal["refused", "unreachable", "timeout", "aborted", "status"]


class DicomNetworkError(NeuroNavError):
    """A DICOM peer refused the association, could not be reached, timed out, aborted, or answered a
    failure status (``status``: the peer's DIMSE status, when it answered one; ``result``: the
    :class:`~neuronav.integrations.dimse.scu.SendResult` with every instance's status, when the
    association got that far)."""

    def __init__(
        self, message: str, *, failure: Failure, status: int | None = None, result: object | None = None
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.status = status
        self.result = result


__all__ = ["DicomNetworkError", "Failure"]
