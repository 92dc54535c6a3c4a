"""The one map from NeuroNav errors to C-STORE statuses (PS3.4 B.2.3: A7xx refused, Cxxx error, 0110 failure)."""

from __future__ import annotations

import pytest

from neuronav.errors import ConfigError, DicomReadError, InputError, UnsafeInputError
from neuronav.integrations.dimse.status import failure_status, status_code
from neuronav.storage.errors import StorageError, UploadTooLargeError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UploadTooLargeError("instance over the limit"), 0xA700),
        (StorageError("disk full"), 0xA700),
        (DicomReadError("truncated", "C-STORE"), 0xC000),
        (UnsafeInputError("absurd size", "C-STORE"), 0xC000),
        (InputError("no SOPInstanceUID"), 0xC000),
        (ConfigError("bad key"), 0x0110),
        (RuntimeError("a bug"), 0x0110),
    ],
)
def test_each_error_has_its_status(error: BaseException, status: int) -> None:
    assert status_code(error) == status


def test_the_error_comment_names_the_class_never_the_message() -> None:
    ds = failure_status(InputError("DOE^JANE 19700101: not readable"))
    assert ds.Status == 0xC000 and ds.ErrorComment == "NeuroNav: InputError"
    assert "DOE" not in str(ds) and len(ds.ErrorComment) <= 64
