"""HL7 v2 over MLLP: the sender of ORU results (:mod:`.mllp`) and the listener for orders (:mod:`.listener`)."""
