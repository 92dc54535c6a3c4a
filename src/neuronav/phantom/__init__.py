"""Synthetic brain MRI studies with known ground truth (tests, training, demos; not real patients).

:func:`generate_study` writes a four-sequence study (T1, T1c, T2, FLAIR) rendered from the MNI152
tissue maps shipped with nilearn, with lesions as BraTS labels (1 necrotic core, 2 oedema,
3 enhancing), mass effect with a known midline shift, optional haemorrhage, bias field and Rician
noise, in the acquisition geometry of a :data:`GEOMETRY_PROFILES` entry; and beside it the label map
on each series' grid and ``truth.json``. The same seed gives the same study. ``midline_shift_mm``
asks for a large mass effect (the seed's mass pushed further until the septum moves that far; the
truth is the deformation's own, exact); without it every seed gives what it always gave.
"""

from neuronav.phantom._geometry import GEOMETRY_PROFILES, GeometryProfile, SeriesSpec
from neuronav.phantom._render import SEQUENCES, add_rician_noise, apply_bias, bias_field, render
from neuronav.phantom._study import (
    FORMATS,
    GENERATOR_VERSION,
    LESION_TYPES,
    SCHEMA_VERSION,
    PhantomSeries,
    PhantomStudy,
    Subject,
    generate_study,
    simulate_subject,
)

__all__ = [
    "FORMATS",
    "GENERATOR_VERSION",
    "GEOMETRY_PROFILES",
    "LESION_TYPES",
    "SCHEMA_VERSION",
    "SEQUENCES",
    "GeometryProfile",
    "PhantomSeries",
    "PhantomStudy",
    "SeriesSpec",
    "Subject",
    "add_rician_noise",
    "apply_bias",
    "bias_field",
    "generate_study",
    "render",
    "simulate_subject",
]
