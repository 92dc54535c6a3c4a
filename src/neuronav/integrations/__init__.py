"""Edges to hospital systems: ``hl7/`` (MLLP sender and listener), ``fhir/`` (REST client), the outbox
(:mod:`.outbox`: durable deliveries with retries), and later ``dimse/`` and ``dicomweb/`` (issue 13).

Each edge follows the rule of docs/ARCHITECTURE.md: parse, find the actor, call one function of
:mod:`neuronav.workflow`, map the result to the protocol's answer (an HL7 ACK code, an HTTP status).
"""
