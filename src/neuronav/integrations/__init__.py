"""Edges to hospital systems, each thin over :mod:`neuronav.workflow`: ``dimse/`` (the DICOM listener
and C-STORE sender), ``dicomweb/`` (QIDO-RS, WADO-RS, STOW-RS message formats), and the HL7 and FHIR
edges beside them."""
