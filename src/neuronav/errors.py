"""The one exception tree of NeuroNav.

Every error a user can cause derives from :class:`NeuroNavError`; the CLI, the HTTP layer and the
DICOM handlers each map it to an exit code / HTTP status / DICOM status in one place.

::

    NeuroNavError
    ├── InputError                   bad input from the user; the message names the file and problem
    │   ├── DicomReadError           a file that is not readable DICOM, or is truncated/inconsistent
    │   │   ├── UnsupportedHeaderError   (ingest.fastheader) a header the fast reader leaves to pydicom
    │   │   └── NeedMoreBytesError       (ingest.fastheader) the buffer ended before Pixel Data: read more
    │   ├── UnsafeInputError         hostile input: executable preamble, zip traversal, zip bomb, absurd size
    │   ├── GeometryError            a series that cannot become one volume (missing slices, mixed orientation)
    │   ├── NiftiReadError           a NIfTI file that cannot be read or has no usable geometry
    │   ├── NoUsableDataError        nothing usable was found in any of the inputs
    │   ├── DeidentificationError    (deid) a file that cannot be de-identified safely
    │   ├── UnsupportedMediaTypeError  (service.deps) a request body of a type the route does not take
    │   ├── MultipartError           (integrations.dicomweb) a multipart/related body that cannot be read
    │   ├── MessageError             (workflow.orders) an HL7 message the listener answers AE / AR
    │   └── UploadTooLargeError      (storage.errors) an upload over the size cap; also a StorageError
    ├── ConfigError                  invalid settings
    │   └── SchemaError              the database is not at this version's schema (neuronav db upgrade)
    ├── NotFoundError                a user, study, analysis, report or annotation that does not exist
    ├── ConflictError                a request the record's state refuses (HTTP 409): a study someone else sent
    ├── SecurityError                (security.errors) authentication and authorisation
    │   ├── AuthError                HTTP 401
    │   │   ├── InvalidToken
    │   │   ├── SecondFactorRequired
    │   │   └── AccountLocked        HTTP 429
    │   ├── PermissionDenied         HTTP 403
    │   │   ├── CsrfError
    │   │   └── PasswordChangeRequired
    │   ├── RateLimited              HTTP 429
    │   ├── AccountStateError        HTTP 409
    │   └── PasswordPolicyError      HTTP 422
    ├── StorageError                 (storage.errors) the encrypted object store
    │   ├── ObjectNotFoundError
    │   ├── StorageIntegrityError    an object that fails its authentication tag or digest
    │   ├── MasterKeyUnavailableError
    │   └── UploadTooLargeError      (drawn above too)
    ├── AnalysisError                an analysis step that cannot produce its result from these images
    │   ├── RegistrationError        (analysis.registration) no transform to the template
    │   └── AtlasError               (analysis.atlas) the atlas files are not installed
    ├── DicomNetworkError            (integrations.dimse) a DICOM peer refused the association, timed out,
    │                                or answered a failure status
    ├── DeliveryError                a hospital system that did not take a delivery (outbox senders)
    │   └── TokenError               (integrations.fhir.client) the OAuth2 token endpoint refused or is down
    ├── ReportError                  a report that cannot be built or written (missing source images, bad format)
    │   └── LifecycleError           a review/sign/amend step not allowed (wrong status or role, bad edit)
    └── ModelError                   (analysis.models) a model that cannot be found, read or trusted
        ├── ModelNotFoundError
        ├── ModelCardError
        ├── ModelRegistrationError
        └── ModelIntegrityError      the file's sha256 differs from its card

Every name in this drawing is a real class and every subclass of :class:`NeuroNavError` is drawn
(``tests/test_errors.py`` compares them).
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


class DeliveryError(NeuroNavError):
    """A hospital system (FHIR server, token endpoint, MLLP receiver) that did not take a delivery."""


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


class ConflictError(NeuroNavError):
    """A request the current state of a record refuses (HTTP 409): a study uploaded already by someone
    else, a forced analysis while one is queued or running."""


class AnalysisError(NeuroNavError):
    """An analysis step that cannot produce its result from these images (no overlap with the template, an
    atlas missing from the installation)."""


class ReportError(NeuroNavError):
    """A report or export that cannot be produced (unknown format, missing source images, invalid content)."""


class LifecycleError(ReportError):
    """A lifecycle step that is not allowed: wrong status, wrong role, an edit that does not apply."""
