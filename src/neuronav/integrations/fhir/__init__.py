"""FHIR REST: the client that POSTs report transactions to a hospital's FHIR server (:mod:`.client`)."""
