"""Edges to hospital systems, each thin over :mod:`neuronav.workflow`: ``dimse/`` (the DICOM listener and
C-STORE sender), ``dicomweb/`` (QIDO-RS, WADO-RS, STOW-RS message formats), ``hl7/`` (MLLP sender and
listener), ``fhir/`` (REST client), and the outbox (:mod:`.outbox`: durable deliveries with retries).

Each edge follows the rule of docs/ARCHITECTURE.md: parse, find the actor, call one function of
:mod:`neuronav.workflow`, map the result to the protocol's answer (a DICOM status, an HL7 ACK code, an
HTTP status).
"""
