"""MR sequence identification: T1, T1c, T2, FLAIR, DWI, ADC, SWI or other, each verdict with its reasons.

- :func:`identify_sequence` – one DICOM series' :class:`~neuronav.ingest.model.SeriesMetadata` → verdict.
- :func:`identify_inventory` – sets ``series.sequence`` on every series of an inventory.
- :func:`sequence_from_filename` – NIfTI inputs: an explicit option, else BraTS / BIDS file names.
"""

from neuronav.series._rules import Sequence
from neuronav.series.filenames import sequence_from_filename
from neuronav.series.identify import SequenceVerdict, identify_inventory, identify_sequence

__all__ = ["Sequence", "SequenceVerdict", "identify_inventory", "identify_sequence", "sequence_from_filename"]
