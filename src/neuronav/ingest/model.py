"""The inventory of what ingest found: studies → series → instances, plus what was skipped and why.

Patient identity (PHI) is kept in :class:`PatientIdentity`, apart from the technical metadata, so
that it can be left out of logs, sidecars and exports by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Source:
    """Where one file's bytes live: a path on disk, or a member inside a zip archive."""

    path: str
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else self.path


@dataclass(frozen=True)
class Problem:
    """A file skipped or a series flagged, with the reason in words a user understands."""

    source: str
    problem: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.source}: {self.problem}"


@dataclass(frozen=True)
class PatientIdentity:
    """PHI. Never logged; left out of sidecars and JSON output unless explicitly asked for."""

    patient_name: str = ""
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    patient_age: str = ""
    other_patient_ids: str = ""
    institution_name: str = ""
    referring_physician_name: str = ""
    accession_number: str = ""

    def __repr__(self) -> str:  # keep PHI out of tracebacks and debug logs
        return "PatientIdentity(<redacted>)"


@dataclass(frozen=True)
class SeriesMetadata:
    """Technical (non-identifying) metadata of one series, as read from its first instance."""

    modality: str = ""
    sop_class_uid: str = ""
    manufacturer: str = ""
    manufacturer_model_name: str = ""
    magnetic_field_strength: float | None = None
    study_date: str = ""
    study_time: str = ""
    series_date: str = ""
    study_description: str = ""
    series_description: str = ""
    protocol_name: str = ""
    series_number: int | None = None
    image_type: tuple[str, ...] = ()
    scanning_sequence: str = ""
    sequence_variant: str = ""
    scan_options: str = ""
    sequence_name: str = ""
    mr_acquisition_type: str = ""
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    pixel_spacing: tuple[float, float] | None = None
    rows: int | None = None
    columns: int | None = None
    repetition_time: float | None = None
    echo_time: float | None = None
    inversion_time: float | None = None
    flip_angle: float | None = None
    diffusion_b_value: float | None = None
    contrast_bolus_agent: str = ""
    contrast_bolus_route: str = ""
    body_part_examined: str = ""
    transfer_syntax_uid: str = ""

    @property
    def has_contrast(self) -> bool:
        agent = self.contrast_bolus_agent.strip().lower()
        return bool(agent) and agent not in ("none", "no", "n", "0", "-")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["has_contrast"] = self.has_contrast
        return d


@dataclass(frozen=True)
class Instance:
    """One DICOM file (or zip member) that passed the header checks."""

    source: Source
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    instance_number: int | None
    image_position: tuple[float, float, float] | None
    image_orientation: tuple[float, float, float, float, float, float] | None
    number_of_frames: int
    rows: int
    columns: int
    acquisition_number: int | None = None
    echo_number: int | None = None
    # pixel layout, validated at scan time so that volume building can read pixels directly
    transfer_syntax_uid: str = ""
    bits_allocated: int = 16
    pixel_representation: int = 0
    samples_per_pixel: int = 1
    pixel_offset: int | None = None  # byte offset of native pixel data in the file or zip member (fast path)
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    pixel_spacing: tuple[float, float] | None = None


@dataclass
class Series:
    series_instance_uid: str
    study_instance_uid: str
    metadata: SeriesMetadata
    instances: list[Instance] = field(default_factory=list)
    sequence: Any = None  # filled by neuronav.series.identify (a SequenceVerdict)

    @property
    def n_frames(self) -> int:
        return sum(i.number_of_frames for i in self.instances)


@dataclass
class ScannedStudy:
    study_instance_uid: str
    patient: PatientIdentity
    study_date: str = ""
    study_description: str = ""
    series: dict[str, Series] = field(default_factory=dict)


@dataclass
class Inventory:
    """Everything ingest found. ``problems`` lists each file skipped (and each warning) with a reason."""

    studies: dict[str, ScannedStudy] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files_seen: int = 0
    duplicates: int = 0

    @property
    def all_series(self) -> list[Series]:
        return [s for st in self.studies.values() for s in st.series.values()]

    @property
    def n_instances(self) -> int:
        return sum(len(s.instances) for s in self.all_series)
