"""The one exception tree of NeuroNav.

Every error a user can cause derives from :class:`NeuroNavError`; the CLI, the HTTP layer and the
DICOM handlers each map it to an exit code / HTTP status / DICOM status in one place.

::

    NeuroNavError
    ├── InputError                 bad input from the user; the message names the file and problem
    │   ├── DicomReadError         a file that is not readable DICOM, or is truncated/inconsistent
    │   ├── UnsafeInputError       hostile input: executable preamble, zip traversal, zip bomb, absurd size
    │   ├── GeometryError          a series that cannot become one volume (missing slices, mixed orientation)
    │   ├── NiftiReadError         a NIfTI file that cannot be read or has no usable geometry
    │   └── NoUsableDataError      nothing usable was found in any of the inputs
    ├── ConfigError                invalid settings
    ├── SecurityError              (neuronav.security.errors) authentication and authorisation
    │   ├── AuthError → InvalidToken, SecondFactorRequired, AccountLocked     HTTP 401 / 429
    │   ├── PermissionDenied → CsrfError                                     HTTP 403
    │   ├── AccountStateError                                                HTTP 409
    │   └── PasswordPolicyError                                              HTTP 422
    ├── ReportError                a report that cannot be built or written (missing source images, bad format)
    │   └── LifecycleError         a review/sign/amend step not allowed (wrong status or role, bad edit)
    └── ModelError                 (neuronav.analysis.models) a model that cannot be found, read or trusted
        ├── ModelNotFoundError, ModelCardError, ModelRegistrationError
        └── ModelIntegrityError    the file's sha256 differs from its card
"""

from __future__ import annotations


class NeuroNavError(Exception):
    """Base of every error NeuroNav raises on purpose."""


class InputError(NeuroNavError):
    """Bad input from the user. ``path`` names the offending file when there is one."""

    def __init__(self, problem: str, path: str | None = None) -> None:
        self.problem = problem
        self.path = path
        super().__init__(f"{path}: {problem}" if path else problem)


class DicomReadError(InputError):
    """A file that is not readable DICOM, or whose content is inconsistent."""


class UnsafeInputError(InputError):
    """Hostile or dangerous input (executable preamble, archive traversal, bomb, absurd size)."""


class GeometryError(InputError):
    """A series whose slices do not form one regular volume."""


class NiftiReadError(InputError):
    """A NIfTI file that cannot be read or lacks usable geometry."""


class NoUsableDataError(InputError):
    """None of the inputs held usable data."""


class ConfigError(NeuroNavError):
    """Invalid or unsafe settings."""


class SchemaError(ConfigError):
    """The database is not at the schema this version needs (``neuronav db upgrade`` fixes it)."""


class NotFoundError(NeuroNavError):
    """A record (user, study, analysis, report, annotation) that does not exist: HTTP 404."""


class ReportError(NeuroNavError):
    """A report or export that cannot be produced (unknown format, missing source images, invalid content)."""


class LifecycleError(ReportError):
    """A lifecycle step that is not allowed: wrong status, wrong role, an edit that does not apply."""
