"""The DICOM listener (Storage SCP, Verification SCP and Study Root C-FIND SCP, pynetdicom): a thin edge over
:mod:`neuronav.workflow.dicom`.

An association flows like this:

1. ``EVT_REQUESTED``: the calling AE title and the peer's address must be a registered node with
   ``incoming`` (:func:`neuronav.workflow.dicom.admit`); otherwise the association is rejected
   (permanent, "calling AE title not recognised"), the reason logged and audited. More than
   ``NEURONAV_DICOM_MAX_ASSOCIATIONS`` at once are rejected by pynetdicom (transient, local limit).
2. Presentation contexts: the storage SOP classes of :data:`STORAGE_CLASSES` (MR classic and enhanced,
   the other common image classes, SEG, SR, Encapsulated PDF) and Verification, each with every
   transfer syntax ingest decodes (:func:`transfer_syntaxes`); the one the sender proposes first is
   accepted, so instances are stored as sent.
3. ``EVT_C_ECHO``: Success. ``EVT_C_STORE``: the instance is checked against the instance and
   association limits, then :func:`neuronav.workflow.dicom.store_instance` validates it, stores it
   encrypted and commits its rows; only then is Success answered. Any error becomes a failure status
   in :mod:`.status` — the handlers never raise into pynetdicom. ``EVT_C_FIND`` (Study Root: STUDY,
   SERIES, IMAGE): :func:`neuronav.workflow.dicom.find`, the QIDO-RS workflow with the node's service
   account: a node finds the studies it sent (a scanner or PACS checks that a study arrived whole).
4. ``EVT_CONN_CLOSE``: what the association brought is audited (counts).

A peer that stalls is cut off: ACSE (negotiation, release), DIMSE (a message's parts) and network
(an idle association) timeouts from the settings. The completion of stable studies runs in a
background thread of the listener (:func:`neuronav.workflow.dicom.complete_stable`, every second), and
once at start (:func:`neuronav.workflow.dicom.recover_at_start`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom import uid
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from neuronav.config import Settings
from neuronav.db.models import DicomNodeRow
from neuronav.errors import InputError
from neuronav.integrations.dimse import status
from neuronav.storage.errors import UploadTooLargeError
from neuronav.storage.store import ObjectStore
from neuronav.workflow import dicom
from neuronav.workflow.background import Periodic

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"  # the Verification SOP Class (C-ECHO)
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
STORAGE_CLASSES = (
    # MR, classic and enhanced
    uid.MRImageStorage,
    uid.EnhancedMRImageStorage,
    uid.EnhancedMRColorImageStorage,
    uid.LegacyConvertedEnhancedMRImageStorage,
    uid.MRSpectroscopyStorage,
    # the other common image classes
    uid.CTImageStorage,
    uid.EnhancedCTImageStorage,
    uid.LegacyConvertedEnhancedCTImageStorage,
    uid.PositronEmissionTomographyImageStorage,
    uid.EnhancedPETImageStorage,
    uid.LegacyConvertedEnhancedPETImageStorage,
    uid.NuclearMedicineImageStorage,
    uid.ComputedRadiographyImageStorage,
    uid.DigitalXRayImageStorageForPresentation,
    uid.UltrasoundImageStorage,
    uid.UltrasoundMultiFrameImageStorage,
    uid.SecondaryCaptureImageStorage,
    uid.MultiFrameSingleBitSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
    uid.GrayscaleSoftcopyPresentationStateStorage,
    uid.SpatialRegistrationStorage,
    uid.DeformableSpatialRegistrationStorage,
    # derived objects: segmentations, parametric maps, documents, structured reports
    uid.SegmentationStorage,
    uid.ParametricMapStorage,
    uid.EncapsulatedPDFStorage,
    uid.BasicTextSRStorage,
    uid.EnhancedSRStorage,
    uid.ComprehensiveSRStorage,
    uid.Comprehensive3DSRStorage,
    uid.KeyObjectSelectionDocumentStorage,
)

NATIVE = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
)
COMPRESSED = (
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
    uid.RLELossless,
)


def transfer_syntaxes() -> list[str]:
    """The transfer syntaxes ingest reads: the native ones, and each compressed one a pixel decoder
    installed with NeuroNav (pylibjpeg and its plug-ins) decodes."""
    from pydicom.pixels.decoders.base import get_decoder

    decodable = []
    for ts in COMPRESSED:
        try:
            if get_decoder(ts).is_available:
                decodable.append(ts)
        except NotImplementedError:
            continue
    return [*NATIVE, *decodable]


@dataclass
class _Association:
    node: DicomNodeRow
    address: str
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    bytes: int = 0


class Listener:
    """The DICOM listener of one process: :meth:`start` it (non-blocking), :meth:`stop` it."""

    def __init__(self, settings: Settings, store: ObjectStore, *, host: str, port: int) -> None:
        self.settings = settings
        self.store = store
        self.host = host
        self.port = port
        self._server: ThreadedAssociationServer | None = None
        self._completion: Periodic | None = None
        self._assocs: dict[int, _Association] = {}
        self._lock = threading.Lock()
        ae = AE(ae_title=settings.dicom_ae_title)
        ae.maximum_associations = settings.dicom_max_associations
        ae.acse_timeout = settings.dicom_acse_timeout_s
        ae.dimse_timeout = settings.dicom_dimse_timeout_s
        ae.network_timeout = settings.dicom_network_timeout_s
        syntaxes = transfer_syntaxes()
        for cls in STORAGE_CLASSES:
            ae.add_supported_context(cls, syntaxes)
        ae.add_supported_context(VERIFICATION, [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian])
        ae.add_supported_context(STUDY_ROOT_FIND, [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian])
        self.ae = ae

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port the system chose when ``port`` was 0)."""
        if self._server is None:
            return self.host, self.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> Listener:
        dicom.recover_at_start(self.settings, self.store)
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        self._server = self.ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        self._completion = Periodic(
            "dicom-stable", min(1.0, self.settings.dicom_stable_age / 2), self._complete_stable
        ).start()
        host, port = self.address
        log.info("dicom: listening as %s on %s:%d", self.settings.dicom_ae_title, host, port)
        return self

    def stop(self) -> None:
        if self._completion is not None:
            self._completion.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.ae.shutdown()

    def _complete_stable(self) -> None:
        dicom.complete_stable(self.settings, self.store)

    # -- handlers: never raise into pynetdicom ---------------------------------------------------------

    def _on_requested(self, event: Any) -> None:
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title or "")
        address = str(assoc.requestor.address)
        try:
            node, reason = dicom.admit(self.settings, calling, address)
        except Exception as exc:  # the registry unreadable: refused for now (transient), never accepted
            log.error("dicom: association from %s refused: registry unavailable (%s)", address, type(exc).__name__)
            assoc.acse.send_reject(0x02, 0x01, 0x01)
            assoc.kill()  # waits until the A-ASSOCIATE-RJ is sent and the peer closed (as pynetdicom's own refusals)
            return
        if node is None:
            log.warning("dicom: association from %s refused: %s", address, reason)
            assoc.acse.send_reject(0x01, 0x01, 0x03)  # rejected permanent, service user, calling AE not recognised
            assoc.kill()
            return
        with self._lock:
            self._assocs[id(assoc)] = _Association(node, address)

    def _on_echo(self, event: Any) -> int:
        return status.SUCCESS

    def _on_store(self, event: Any) -> int | Dataset:
        with self._lock:
            state = self._assocs.get(id(event.assoc))
        if state is None:  # not admitted (cannot happen: a refused association has no DIMSE)
            return status.PROCESSING_FAILURE
        try:
            size = len(event.request.DataSet.getbuffer())
            if state.bytes + size > self.settings.dicom_max_association_bytes:
                raise UploadTooLargeError(
                    f"association over its volume limit of {self.settings.dicom_max_association_bytes} bytes"
                )
            if size > self.settings.dicom_max_instance_bytes:
                raise UploadTooLargeError(f"instance over the limit of {self.settings.dicom_max_instance_bytes} bytes")
            stored = dicom.store_instance(self.settings, self.store, state.node, event.encoded_dataset())
        except Exception as exc:
            state.failed += 1
            log.warning("dicom: C-STORE from %s refused: %s", state.node.name, type(exc).__name__)
            return status.failure_status(exc)
        state.bytes += stored.size
        if stored.duplicate:
            state.duplicates += 1
        else:
            state.stored += 1
        return status.SUCCESS

    def _on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        """C-FIND (Study Root): what the node may find here (:func:`neuronav.workflow.dicom.find`)."""
        with self._lock:
            state = self._assocs.get(id(event.assoc))
        if state is None:
            yield status.PROCESSING_FAILURE, None
            return
        try:
            matches = dicom.find(self.settings, self.store, state.node, state.address, event.identifier)
        except InputError as exc:
            log.warning("dicom: C-FIND from %s refused: %s", state.node.name, exc)
            yield status.IDENTIFIER_DOES_NOT_MATCH, None
            return
        except Exception as exc:
            log.warning("dicom: C-FIND from %s failed: %s", state.node.name, type(exc).__name__)
            yield status.UNABLE_TO_PROCESS, None
            return
        for match in matches:
            if event.is_cancelled:
                yield status.CANCEL, None
                return
            yield status.PENDING, match

    def _on_close(self, event: Any) -> None:
        with self._lock:
            state = self._assocs.pop(id(event.assoc), None)
        if state is None:
            return
        summary: dict[str, int | str] = {
            "stored": state.stored,
            "duplicates": state.duplicates,
            "failed": state.failed,
            "bytes": state.bytes,
            "ended": "released" if event.assoc.is_released else "aborted",
        }
        try:
            dicom.association_ended(self.settings, state.node, state.address, summary)
        except Exception as exc:
            log.warning("dicom: auditing an association failed (%s)", type(exc).__name__)


def listen(settings: Settings, store: ObjectStore, *, host: str, port: int) -> Listener:
    """Start a :class:`Listener` (the caller stops it)."""
    return Listener(settings, store, host=host, port=port).start()


__all__ = ["STORAGE_CLASSES", "Listener", "listen", "transfer_syntaxes"]
