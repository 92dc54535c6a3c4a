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
* Derived objects keep what their IOD requires (dciodvfy reports no error after de-identification):
  SEG (segments, segmentation type, frame references), SR (the content tree: codes, numbers, regions
  and references kept, person names dummied, dates shifted, TEXT values kept only for known concepts
  such as tracking identifiers and NeuroNav's own generated texts, others replaced by a dummy),
  Encapsulated PDF (the document itself is replaced by a one-page placeholder: its text can identify
  the patient) and NeuroNav's Secondary Captures (the burnt-in text box is blanked). References
  (Referenced Series/Instance UIDs, Source Image sequences, SR content references) go through the
  same keyed UID map as the source images, so they resolve when both are de-identified with one key.
* Refused (:class:`DeidentificationError`): BurnedInAnnotation YES on any other object.

Not implemented: Clean Pixel Data (beyond NeuroNav's own SC text box), Clean Recognizable Visual
Features (no defacing), Clean Graphics, Clean Structured Content (beyond the rule above; not claimed
in DeidentificationMethodCodeSequence), Clean Descriptors (SeriesDescription, ProtocolName and the other
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
