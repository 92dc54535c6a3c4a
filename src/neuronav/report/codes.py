"""Coded concepts used by every structured output (DICOM SR, FHIR, HL7 v2), in one table.

Standard codes where one exists (SNOMED CT as used by DICOM PS3.16, LOINC); a NeuroNav private code
(coding scheme designator ``99NEURONAV``, the DICOM convention for private schemes) where none does.
"""

from __future__ import annotations

from neuronav.report.model import Code

PRIVATE_SCHEME = "99NEURONAV"

# FHIR / HL7 v2 system for each scheme designator.
SYSTEM_URLS = {
    "SCT": "http://snomed.info/sct",
    "LN": "http://loinc.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
    PRIVATE_SCHEME: "urn:neuronav:codes",
}
HL7V2_SYSTEMS = {"SCT": "SCT", "LN": "LN", "DCM": "DCM", "UCUM": "UCUM", PRIVATE_SCHEME: "99NN"}

# What is measured
VOLUME = Code(value="118565006", scheme="SCT", meaning="Volume")
DIAMETER = Code(value="81827009", scheme="SCT", meaning="Diameter")
LONG_AXIS = Code(value="103339001", scheme="SCT", meaning="Long Axis")
SHORT_AXIS = Code(value="103340004", scheme="SCT", meaning="Short Axis")
AREA = Code(value="42798000", scheme="SCT", meaning="Area")
MIDLINE_SHIFT = Code(value="midline-shift", scheme=PRIVATE_SCHEME, meaning="Midline shift of brain")
ASYMMETRY = Code(value="ventricle-asymmetry", scheme=PRIVATE_SCHEME, meaning="Left-right asymmetry index")
PROBABILITY = Code(value="tumour-probability", scheme=PRIVATE_SCHEME, meaning="Probability of brain tumour")
CONFIDENCE = Code(value="classification-confidence", scheme=PRIVATE_SCHEME, meaning="Classification confidence")
RANO = Code(value="rano-category", scheme=PRIVATE_SCHEME, meaning="Volumetric RANO response category")

# Where
BRAIN = Code(value="12738006", scheme="SCT", meaning="Brain")
NEOPLASM = Code(value="108369006", scheme="SCT", meaning="Neoplasm")
NECROSIS = Code(value="6574001", scheme="SCT", meaning="Necrosis")
OEDEMA = Code(value="79654002", scheme="SCT", meaning="Edema")
HAEMORRHAGE = Code(value="50960005", scheme="SCT", meaning="Hemorrhage")
LATERAL_VENTRICLE = Code(value="66720007", scheme="SCT", meaning="Lateral ventricle")
ENHANCING_TUMOUR = Code(value="enhancing-tumour", scheme=PRIVATE_SCHEME, meaning="Enhancing tumour")
TUMOUR_CORE = Code(value="tumour-core", scheme=PRIVATE_SCHEME, meaning="Tumour core (necrosis and enhancing)")

# The report as a whole
REPORT_CODE = Code(value="24590-2", scheme="LN", meaning="MR Brain")
IMAGING_REPORT = Code(value="18748-4", scheme="LN", meaning="Diagnostic imaging study")
# The SR's Procedure Reported (TID 1500 row 4): a code of CID 100 Quantitative Diagnostic Imaging Procedures
# (the analysis reads four MR sequences together); REPORT_CODE above is not in that context group.
SR_PROCEDURE = Code(value="126020", scheme="DCM", meaning="Multiparametric MRI")

# BraTS labels (segmentation values) → segment descriptions (for DICOM SEG and the viewer)
BRATS_SEGMENTS: tuple[tuple[int, str, Code], ...] = (
    (1, "Necrotic / non-enhancing tumour core", NECROSIS),
    (2, "Peritumoural oedema", OEDEMA),
    (3, "Enhancing tumour", ENHANCING_TUMOUR),
)
