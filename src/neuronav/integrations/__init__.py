"""Edges to hospital systems, each thin over :mod:`neuronav.workflow`: ``dicomweb/`` (QIDO-RS, WADO-RS,
STOW-RS message formats), and the DICOM network, HL7 and FHIR edges beside it."""
