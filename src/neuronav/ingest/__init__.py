"""Ingest: files, folder trees and zip archives → an inventory of studies and series.

Public surface::

    inv = scan(["study.zip", "folder/"])      # never raises for bad files
    for problem in inv.problems: ...          # each file skipped, with its reason
    for series in inv.all_series: ...         # Series(metadata, instances)

Volumes are built from a series by :func:`neuronav.volume.volume_from_series`.
"""

from neuronav.ingest.limits import DEFAULT_LIMITS, Limits
from neuronav.ingest.model import (
    Instance,
    Inventory,
    PatientIdentity,
    Problem,
    ScannedStudy,
    Series,
    SeriesMetadata,
    Source,
)
from neuronav.ingest.scan import scan

__all__ = [
    "DEFAULT_LIMITS",
    "Instance",
    "Inventory",
    "Limits",
    "PatientIdentity",
    "Problem",
    "ScannedStudy",
    "Series",
    "SeriesMetadata",
    "Source",
    "scan",
]
