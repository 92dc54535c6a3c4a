"""The report document: what a radiologist reviews and signs, derived from one :class:`Findings`.

Every output (JSON, PDF, DICOM SEG/SR/PDF/SC, FHIR, HL7 v2) is written from a :class:`Report`, and
every number in a report comes from its ``findings`` through :mod:`neuronav.report.build`; the
``measurements`` table is the one list of numbers that the SR, the FHIR Observations and the HL7
OBX segments are written from, so they cannot disagree.

Lifecycle (:mod:`neuronav.report.lifecycle`): ``preliminary`` (as the AI wrote it; a radiologist's edits
are recorded and never change the status) → ``reviewed`` (only by an explicit "mark reviewed") →
``final`` (signed after re-authentication; the signed content is hashed, the signature's name, time
and meaning recorded) → ``amended`` (a new version of a final report with its reason; earlier
versions are kept).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from neuronav.findings import Change, Findings, ProducedBy

# 1.1: the optional patient identity of clinical outputs; 1.2: readers' measurements, Signature.meaning,
# reauthenticated_by, Narrative.clinical_information; 1.3: findings 1.4's Segmentation.edited (a corrected
# mask), a lesion's probability (mean, max), Study.skull_stripped
REPORT_SCHEMA_VERSION = "1.3"
REPORT_ID_PATTERN = r"^NN-\d{8}-[0-9a-f]{8}$"
Status = Literal["preliminary", "reviewed", "final", "amended"]
Urgency = Literal["routine", "soon", "urgent"]

SYNTHETIC_TRAINING = (
    "The AI models were trained on synthetic images only (no patient data) and are not validated for clinical use."
)
SYNTHETIC_TRAINING_SHORT = "AI trained on synthetic data only"  # burnt into Secondary Capture pixels
DISCLAIMERS: tuple[str, ...] = (
    "Research software, not for clinical use.",
    SYNTHETIC_TRAINING,
    "AI-generated results are not a diagnosis.",
    "All findings require review and confirmation by a qualified physician.",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Code(_Model):
    """A coded concept: ``scheme`` is the DICOM coding scheme designator (SCT, LN, RADLEX, DCM, UCUM)."""

    value: str
    scheme: str
    meaning: str


class ModelInfo(_Model):
    name: str
    version: str
    kind: Literal["model", "algorithm"]
    sha256: str | None = None


class Patient(_Model):
    """The patient's identity as the hospital's systems match on it (PHI), from the study's DICOM.

    Set on a :class:`Report` only while a clinical output is written for a reader allowed to see identity
    (:func:`neuronav.workflow.identity.patient_of`, :func:`neuronav.report.identity.patient_from`); a
    report without it is pseudonymous. Stored report versions never hold it."""

    name: str | None = None  # DICOM PN: FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX
    mrn: str | None = None  # PatientID
    mrn_issuer: str | None = None  # IssuerOfPatientID, else the configured assigning authority
    birth_date: str | None = None  # YYYYMMDD
    sex: str | None = None  # M / F / O
    accession_number: str | None = None
    referring_physician: str | None = None  # DICOM PN

    def __repr__(self) -> str:  # keep PHI out of tracebacks and debug logs
        return "Patient(<redacted>)"

    __str__ = __repr__


class StudyInfo(_Model):
    upload_date: str  # ISO date-time the study reached NeuroNav (the analysis start when unknown)
    scan_type: str  # e.g. "MRI Brain (T1, T1c, T2, FLAIR)"
    patient_pseudonym: str | None  # keyed HMAC of the patient id; never the id itself
    study_instance_uid: str | None
    study_date: str
    reference_series_uid: str | None
    reference_sequence: str
    sequences_used: list[str]
    sequences_missing: list[str]
    input_kind: Literal["dicom", "nifti"]
    models: list[ModelInfo]
    processing_time_s: float
    overall_confidence: float = Field(ge=0.0, le=1.0)


class PrimaryDetection(_Model):
    detected: bool
    probability: float
    threshold: float
    location: str | None  # "left frontal lobe (Frontal_Sup_2_L)" of the largest lesion
    size_mm: float | None  # largest 3D diameter of the largest lesion
    volume_ml: float  # whole tumour
    lesion_count: int
    classification: str | None
    classification_confidence: float | None
    class_probabilities: dict[str, float]


class SecondaryFindings(_Model):
    oedema_present: bool
    oedema_ml: float
    midline_shift_mm: float  # signed, positive towards the patient's right
    midline_shift_level: str
    ventricular_status: str
    ventricles_ml: float
    ventricular_asymmetry: float
    haemorrhage_suspected: bool
    haemorrhage_ml: float


class ReviewItem(_Model):
    structure: str
    statement: str


class AIFindings(_Model):
    primary_detection: PrimaryDetection
    secondary_findings: SecondaryFindings
    anatomical_review: list[ReviewItem]


class Measurement(_Model):
    """One number of the report. ``key`` is stable (used as SR/FHIR/HL7 identifier)."""

    key: str  # e.g. "whole_tumour_volume", "lesion1_max_diameter"
    label: str  # human text, e.g. "Whole tumour volume"
    value: float
    unit: str  # UCUM: "mL", "mm", "mm2", "%", "1"
    concept: Code  # what is measured (LOINC / SNOMED CT / RadLex / DCM)
    finding_site: Code | None = None  # where (structure, lesion sub-region)
    lesion_index: int | None = None  # 1-based lesion number when per-lesion
    laterality: Literal["left", "right", "midline"] | None = None
    source: str  # JSON pointer into the findings: "/segmentation/volumes/whole_tumour_ml"
    produced_by: list[ModelInfo]


class KeySlices(_Model):
    """Voxel indices on the reference grid (segmentation.nii.gz) through the largest lesion's centroid
    (the brain centre when there is no lesion); ``centre_ras_mm`` is the same point in RAS mm."""

    sagittal_i: int
    coronal_j: int
    axial_k: int
    centre_ras_mm: tuple[float, float, float]
    through: Literal["lesion centroid", "image centre"]


class SliceAnnotation(_Model):
    plane: Literal["axial", "coronal", "sagittal"]
    index: int
    text: str


class VisualData(_Model):
    segmentation_file: str
    heatmap_file: str
    reference_image_file: str | None
    key_slices: KeySlices | None  # None when the images were not available when the report was built
    coordinates_3d: list[dict[str, Any]]  # per lesion: index, centroid_ras_mm, centroid_mni_mm
    slice_annotations: list[SliceAnnotation]


class ChangeRow(_Model):
    key: str
    label: str
    prior_ml: float | None
    current_ml: float
    change_percent: float | None


class ChangeVersusPrior(_Model):
    prior_study: str
    prior_date: str
    rano_category: str
    rule: str
    rows: list[ChangeRow]


class Recommendation(_Model):
    rule_id: str
    text: str
    urgency: Urgency
    rests_on: list[str]  # "<finding pointer> = <value>", e.g. "/midline_shift/magnitude_mm = 6.1"
    label: str = "AI-generated suggestion"


class Edit(_Model):
    who: str
    role: str
    when: datetime
    path: str  # JSON pointer into the report ("/narrative/impression") or findings ("/findings/...")
    old: Any
    new: Any


SIGNATURE_MEANING = "Approved: I have reviewed the images and this report and I am responsible for its content"
AMENDMENT_MEANING = "Amendment approved: I am responsible for the changes and the reason stated"


class Signature(_Model):
    """The electronic signature and its manifestation (21 CFR 11.50): the signer's printed name, the
    date and time, and the meaning of the signature; every output shows the three."""

    signed_by: str  # the signer's printed name
    role: str
    signed_at: datetime
    content_sha256: str  # sha256 of the canonical JSON of the report without its signature
    meaning: str = SIGNATURE_MEANING  # what the signature means (report 1.1; 1.0 reports: the default)
    reauthenticated_by: Literal["password", "password+totp"] | None = None  # how the signer proved it was them

    def manifestation(self) -> str:
        """Printed name, date and time (UTC) and meaning, as every output states the signature."""
        when = self.signed_at.astimezone(UTC) if self.signed_at.tzinfo is not None else self.signed_at
        return (
            f"Electronically signed by {self.signed_by} ({self.role}) on {when:%Y-%m-%d %H:%M:%S} UTC. "
            f"Meaning: {self.meaning}."
        )


class Narrative(_Model):
    """Text the radiologist may rewrite; generated from the findings in the preliminary report."""

    findings_text: str
    impression: str
    radiologist_comment: str = ""
    clinical_information: str = ""  # the indication, as the requester gave it or the radiologist wrote it


class ReaderMeasurement(_Model):
    """A measurement a reader made in the viewer and included in the report (not the AI's): written as a
    structured row — an SR TID 1500 group, a FHIR Observation, an HL7 OBX — beside the AI's."""

    key: str  # "reader_<annotation id>_<quantity>"
    label: str  # "Distance (reader)"
    value: float
    unit: str  # UCUM
    concept: Code
    reader: str  # display name of the person who measured
    annotation_id: str
    plane: str | None = None
    image: str | None = None  # the sequence measured on
    note: str | None = None


class Report(_Model):
    schema_version: str = REPORT_SCHEMA_VERSION
    report_id: str = Field(pattern=REPORT_ID_PATTERN)
    version: int = Field(ge=1)
    status: Status
    created: datetime
    supersedes_version: int | None = None  # for amendments: the version this one replaces
    amendment_reason: str | None = None
    study_info: StudyInfo
    ai_findings: AIFindings
    measurements: list[Measurement]
    visual_data: VisualData
    change_versus_prior: ChangeVersusPrior | None
    recommendations: list[Recommendation]
    narrative: Narrative
    disclaimers: list[str]
    edits: list[Edit] = Field(default_factory=list)
    signature: Signature | None = None
    findings: Findings  # the (possibly radiologist-edited) findings every section above is derived from
    reader_measurements: list[ReaderMeasurement] = Field(default_factory=list)  # schema 1.2
    patient: Patient | None = None  # identity for a clinical output; None: pseudonymous (never stored)

    def pseudonymous(self) -> Report:
        """This report without the patient's identity: what is stored, and what research outputs carry."""
        return self if self.patient is None else self.model_copy(update={"patient": None})

    def identified(self, patient: Patient | None) -> Report:
        """This report carrying ``patient``'s identity, for a clinical output."""
        return self.model_copy(update={"patient": patient})

    @property
    def notices(self) -> list[str]:
        """The disclaimers every output writes: this report's, then any standard one it predates (a report
        stored before :data:`SYNTHETIC_TRAINING` was added says it too, its signed content unchanged)."""
        return [*self.disclaimers, *(d for d in DISCLAIMERS if d not in self.disclaimers)]


# fields added after reports were first stored and signed, with the value an older report reads as: left
# out of the signed content (and of a document written in an older schema version) while they hold it,
# so a report signed before they existed still verifies and still matches its own published schema
_LATER_LESION_DEFAULTS: dict[str, Any] = {
    "core_ml": None,
    "enhancing_ml": None,
    "oedema_ml": None,
    "enhancing_max_diameter_mm": None,
    "oedema_max_diameter_mm": None,
    "satellites": 0,
    "probability": None,  # schema 1.3
    "probability_max": None,  # schema 1.3
}
_LATER_SEGMENTATION_DEFAULTS: dict[str, Any] = {"oedema_islands_ml": 0.0, "edited": None}
_LATER_SIGNATURE_DEFAULTS: dict[str, Any] = {"meaning": SIGNATURE_MEANING, "reauthenticated_by": None}
_LATER_NARRATIVE_DEFAULTS: dict[str, Any] = {"clinical_information": ""}


def _drop(d: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, default in defaults.items():
        if key in d and d[key] == default:
            del d[key]


def drop_later_defaults(data: dict[str, Any]) -> None:
    """Remove, in place, from a report's JSON data the fields added later that hold their default."""
    seg = (data.get("findings") or {}).get("segmentation") or {}
    _drop(seg, _LATER_SEGMENTATION_DEFAULTS)
    study = (data.get("findings") or {}).get("study")
    if isinstance(study, dict):
        _drop(study, {"skull_stripped": None})  # schema 1.3
    for lesion in seg.get("lesions") or []:
        _drop(lesion, _LATER_LESION_DEFAULTS)
    if isinstance(data.get("narrative"), dict):
        _drop(data["narrative"], _LATER_NARRATIVE_DEFAULTS)
    if isinstance(data.get("signature"), dict):
        _drop(data["signature"], _LATER_SIGNATURE_DEFAULTS)
    if data.get("reader_measurements") == []:  # schema 1.2
        del data["reader_measurements"]
    _drop_provider(data.get("findings"))


def _drop_provider(node: Any) -> None:
    """Schema 1.3: ``execution_provider`` of every ``produced_by``, left out while it is None."""
    if isinstance(node, dict):
        if node.get("execution_provider", 0) is None and "kind" in node:
            del node["execution_provider"]
        for value in node.values():
            _drop_provider(value)
    elif isinstance(node, list):
        for value in node:
            _drop_provider(value)


def model_info(p: ProducedBy) -> ModelInfo:
    return ModelInfo(name=p.name, version=p.version, kind=p.kind, sha256=p.sha256)


__all__ = [
    "AMENDMENT_MEANING",
    "DISCLAIMERS",
    "REPORT_SCHEMA_VERSION",
    "SIGNATURE_MEANING",
    "SYNTHETIC_TRAINING",
    "SYNTHETIC_TRAINING_SHORT",
    "AIFindings",
    "Change",
    "ChangeRow",
    "ChangeVersusPrior",
    "Code",
    "Edit",
    "KeySlices",
    "Measurement",
    "ModelInfo",
    "Narrative",
    "Patient",
    "PrimaryDetection",
    "ReaderMeasurement",
    "Recommendation",
    "Report",
    "ReviewItem",
    "SecondaryFindings",
    "Signature",
    "SliceAnnotation",
    "Status",
    "StudyInfo",
    "VisualData",
    "drop_later_defaults",
    "model_info",
]
