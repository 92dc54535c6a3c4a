"""Edges to hospital systems: ``dimse/`` (the DICOM listener and C-STORE sender; more to come:
dicomweb/, hl7/, fhir/, the outbox). Each is a thin edge over :mod:`neuronav.workflow`."""
