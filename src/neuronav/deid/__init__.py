"""De-identification of DICOM for export and research (DICOM PS3.15 Annex E).

Profile: the **Basic Application Level Confidentiality Profile** with two options,
**Retain Longitudinal Temporal Information with Modified Dates** (dates shifted by a per-patient
number of days, so intervals between a patient's studies survive) and **Retain Patient
Characteristics** (age, sex, size, weight kept). Recorded in every object as PatientIdentityRemoved
YES, a DeidentificationMethod text and DeidentificationMethodCodeSequence DCM 113100, 113107, 113108.

::

    deid = Deidentifier(key)                        # key: >= 32 secret bytes (the site's pseudonym key)
    clean = deid.dataset(ds)                        # a new Dataset; ds is untouched
    report = deid.files(["in/"], "out/")            # out/<study>/<series>/<sop>.dcm, atomic writes
    report.summary()                                # counts and warnings, no PHI

* PatientID and PatientName become the keyed pseudonym :func:`neuronav.pseudonym.pseudonymise`
  (HMAC-SHA256, never a plain or salted hash).
* UIDs become ``2.25.<HMAC-SHA256(key, uid)>``: the same in every file of a study, in every
  reference to it, and in every run with the same key; another key gives other UIDs.
* Private attributes, overlays and curves are removed; attributes the table does not list are
  removed unless known to be technical and safe.
* Refused (:class:`DeidentificationError`): BurnedInAnnotation YES, structured content.

Not implemented: Clean Pixel Data, Clean Recognizable Visual Features (no defacing), Clean Graphics,
Clean Structured Content, Clean Descriptors (SeriesDescription, ProtocolName and the other
descriptions are removed, as the Basic Profile says), Retain Safe Private, Retain UIDs, Retain Device
Identity, Retain Institution Identity, Retain Longitudinal Temporal Information with Full Dates.
See :mod:`neuronav.deid.profile` for the attribute table and the choices made.
"""

from neuronav.deid.deidentify import (
    DeidentificationError,
    DeidentificationReport,
    Deidentifier,
    encode,
    shift_date,
    shift_datetime,
)
from neuronav.deid.profile import TABLE, Action, Rule, method_description

__all__ = [
    "TABLE",
    "Action",
    "DeidentificationError",
    "DeidentificationReport",
    "Deidentifier",
    "Rule",
    "encode",
    "method_description",
    "shift_date",
    "shift_datetime",
]
