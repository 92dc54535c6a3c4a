"""The DIMSE edge (pynetdicom): the listener (Storage and Verification SCP, :mod:`.listener`) and the
C-STORE sender (:mod:`.scu`); errors → DICOM statuses in :mod:`.status`."""
