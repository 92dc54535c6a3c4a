"""The findings model: the one typed result of an analysis, the contract between the stages.

Every output (JSON report, PDF, DICOM SEG/SR, FHIR, HL7, viewer) reads these numbers and nothing
else, so they cannot disagree. Every AI-derived value carries ``produced_by``: the model or
algorithm, its version and (for models) the sha256 of the file that computed it.
Coordinates: ``*_ras_mm`` are scanner RAS millimetres of the reference series; ``*_mni_mm`` are
MNI152 millimetres after the affine registration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# 1.1: Study.patient_pseudonym, Change.prior_volumes_ml; 1.2: overall_confidence_produced_by (all optional);
# 1.3: a lesion is a tumour (core with its oedema, satellites joined): Lesion.core_ml, enhancing_ml, oedema_ml,
# satellites, oedema_max_diameter_mm; diameters are the core's; Segmentation.oedema_islands_ml;
# 1.4: Segmentation.edited (a radiologist's corrected label map: version, author, what changed; optional)
SCHEMA_VERSION = "1.4"
DISCLAIMER = (
    "Research software, not for clinical use. AI-generated results are not a diagnosis and require "
    "review by a qualified physician."
)

Vec3 = tuple[float, float, float]
TumourClass = Literal["glioma", "meningioma", "metastasis"]  # the classes reports code (SNOMED CT, NeuroNav codes)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProducedBy(_Model):
    name: str
    version: str
    kind: Literal["model", "algorithm"]
    sha256: str | None = None  # of the model file, for kind == "model"
    execution_provider: str | None = None  # the ONNX Runtime provider the model ran on (report schema 1.3)


class Location(_Model):
    hemisphere: Literal["left", "right", "midline"]
    lobe: str
    region: str
    atlas: str  # name and version of the atlas the region comes from


class Lesion(_Model):
    """One lesion as radiologists count them (:func:`neuronav.analysis.measure.lesions`): a tumour core
    (labels 1 and 3) with the oedema around it; core fragments within the satellite distance belong to
    it; oedema that surrounds no core is never a lesion. Since schema 1.3 the diameters and the centroid
    are the core's and ``volume_ml`` is the whole lesion (core + its oedema); findings written before 1.3
    measured a connected component of the whole tumour (the new fields then keep their defaults)."""

    index: int  # 1-based, largest core first
    volume_ml: float  # the lesion with its oedema (1.3); a whole-tumour component before
    centroid_ras_mm: Vec3
    centroid_mni_mm: Vec3
    max_diameter_mm: float  # largest 3D extent of the core
    max_axial_diameter_mm: float  # longest in-plane core diameter on the axial slice where it is largest
    perpendicular_axial_diameter_mm: float  # longest core diameter perpendicular to it on that slice
    bidimensional_product_mm2: float
    location: Location
    core_ml: float | None = None  # necrotic / non-enhancing core + enhancing (labels 1 + 3)
    enhancing_ml: float | None = None  # label 3
    oedema_ml: float | None = None  # the oedema assigned to this lesion (label 2), reported apart
    enhancing_max_diameter_mm: float | None = None  # largest 3D extent of the enhancing part (0 when none)
    oedema_max_diameter_mm: float | None = None  # largest 3D extent of the lesion with its oedema
    satellites: int = 0  # core fragments within the satellite distance joined to the main core
    # the segmentation ensemble's tumour probability (1 − background) over the lesion's voxels (core and
    # its oedema): mean and maximum (report schema 1.3; None in findings written before)
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    probability_max: float | None = Field(default=None, ge=0.0, le=1.0)


class Volumes(_Model):
    necrotic_core_ml: float  # label 1
    oedema_ml: float  # label 2
    enhancing_ml: float  # label 3
    whole_tumour_ml: float  # 1+2+3
    tumour_core_ml: float  # 1+3


class SegmentationEdit(_Model):
    """Provenance of a label map a radiologist corrected (:mod:`neuronav.workflow.segmentations`): the
    volumes and lesions are then measured from this version, by the same algorithms as the AI's."""

    version: int = Field(ge=2)  # 1 is the AI's segmentation.nii.gz, kept untouched
    parent_version: int = Field(ge=1)
    edited_by: str  # the radiologist's printed name
    role: str
    edited_at: datetime
    accepted_lesions: list[int] = Field(default_factory=list)  # AI lesions (of the parent) confirmed
    rejected_lesions: list[int] = Field(default_factory=list)  # AI lesions (of the parent) removed
    voxels_changed: int = 0  # voxels whose label differs from the parent version
    note: str = ""


class Segmentation(_Model):
    volumes: Volumes
    lesions: list[Lesion]
    oedema_islands_ml: float = 0.0  # oedema (label 2) around no tumour core: in the volumes, never a lesion
    uncertainty: float = Field(ge=0.0, le=1.0)  # ensemble disagreement within the whole tumour
    produced_by: list[ProducedBy]
    label_file: str = "segmentation.nii.gz"
    probability_file: str = "probability.nii.gz"
    edited: SegmentationEdit | None = None  # 1.4: corrected by a radiologist (None: as the AI segmented)


class Detection(_Model):
    tumour_detected: bool
    probability: float = Field(ge=0.0, le=1.0)
    threshold: float
    produced_by: ProducedBy


class Classification(_Model):
    label: TumourClass | None  # None when no tumour was detected; named by the classifier's card
    probabilities: dict[str, float]
    confidence: float = Field(ge=0.0, le=1.0)
    produced_by: ProducedBy


class MidlineShift(_Model):
    shift_mm: float  # signed: positive = towards the patient's right
    magnitude_mm: float
    level: str  # where it was measured
    produced_by: ProducedBy


class Ventricles(_Model):
    total_ml: float
    left_ml: float
    right_ml: float
    asymmetry: float  # (left − right) / (left + right)
    status: Literal["normal", "asymmetric", "compressed", "enlarged"]
    produced_by: ProducedBy


class Oedema(_Model):
    present: bool
    volume_ml: float


class Haemorrhage(_Model):
    suspected: bool
    volume_ml: float
    produced_by: ProducedBy


class Change(_Model):
    prior_study: str
    prior_date: str
    volume_change_percent: dict[str, float | None]  # per region; None when the prior value was 0
    prior_volumes_ml: dict[str, float] = Field(default_factory=dict)  # the prior's volumes, same keys
    rano_category: Literal["progression", "stable", "partial_response", "complete_response"]
    rule: str


class Study(_Model):
    study_instance_uid: str | None
    study_date: str
    sequences_used: list[str]
    sequences_missing: list[str]
    reference_sequence: str
    reference_series_uid: str | None
    input_kind: Literal["dicom", "nifti"]
    patient_pseudonym: str | None = None  # keyed HMAC of the patient id (neuronav.pseudonym); never the id
    # the images were skull-stripped (detected from the reference: neuronav.analysis.preprocess.skull_stripped);
    # None in findings written before report schema 1.3
    skull_stripped: bool | None = None


class Findings(_Model):
    schema_version: str = SCHEMA_VERSION
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    neuronav_version: str
    study: Study
    detection: Detection
    classification: Classification
    segmentation: Segmentation
    midline_shift: MidlineShift
    ventricles: Ventricles
    oedema: Oedema
    haemorrhage: Haemorrhage
    overall_confidence: float = Field(ge=0.0, le=1.0)  # not a calibrated probability: neuronav.analysis.confidence
    overall_confidence_produced_by: ProducedBy | None = None  # the algorithm and version (None before 1.2)
    timings_s: dict[str, float]
    change: Change | None = None
    disclaimer: str = DISCLAIMER
