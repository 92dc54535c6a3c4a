"""The attribute action table: PS3.15 Annex E, Table E.1-1, as NeuroNav applies it.

Profile and options
-------------------
* **Basic Application Level Confidentiality Profile** (PS3.15 E.2, code DCM 113100).
* **Retain Longitudinal Temporal Information with Modified Dates Option** (E.3.6, DCM 113107): the
  dates and times whose "Rtn. Long. Modif. Dates" column says ``C`` are shifted by a per-patient
  number of whole days instead of being removed or emptied, so that intervals between the studies
  of one patient survive. Times (TM) are therefore unchanged; a DT keeps its time and timezone.
* **Retain Patient Characteristics Option** (E.3.4, DCM 113108): age, sex, size, weight and the
  other attributes whose "Rtn. Pat. Chars." column says ``K`` are kept.

Both options are on by default and each can be switched off (``Deidentifier(key, retain_dates=False,
retain_patient_characteristics=False)``, ``neuronav deid --no-retain-dates …``, the service's
de-identified export). Without an option its rows get the Basic Profile action
(:func:`basic_action`): ``D`` where the column allows a dummy (so an attribute that is Type 1 in some
IOD stays valid), else ``Z`` where it allows an empty value, else ``X``. Dates then become
19000101 / times 000000 or are emptied or removed, LongitudinalTemporalInformationModified is
``REMOVED``, and the option's code and text are left out of the de-identification record.

Not implemented (and not claimed in DeidentificationMethodCodeSequence): Clean Pixel Data (objects
with BurnedInAnnotation YES are refused instead), Clean Recognizable Visual Features (no defacing:
a 3D head MRI can be rendered as a face), Clean Graphics (overlays 60xx and curves 50xx are removed
instead), Clean Structured Content as far as NeuroNav's own SRs need it (TEXT values kept only for the concepts of
:data:`SAFE_TEXT_CONCEPTS`; not claimed in the code sequence), Clean Descriptors
(descriptions such as SeriesDescription and ProtocolName are removed, as the Basic Profile says;
NeuroNav's sequence identification then relies on the acquisition parameters), Retain Safe Private
(all private attributes are removed), Retain UIDs, Retain Device Identity, Retain Institution
Identity and Retain Longitudinal Temporal Information with Full Dates.

Reading the table
-----------------
Each :class:`Rule` records the action printed in Table E.1-1 for the Basic Profile (``basic``: one of
``X`` remove, ``Z`` empty, ``D`` dummy, ``U`` new UID, ``K`` keep, or a combination such as
``X/Z/D`` whose choice depends on the attribute's type in the IOD), the action of the option column
that applies (``option``: ``K`` or ``C``, or empty), and the one :class:`Action` NeuroNav performs.
For combined actions NeuroNav picks, for the MR image IODs it handles: ``Z`` where the attribute is
Type 2, ``D`` where it is Type 1 in some MR IOD (DeviceSerialNumber in the Enhanced General
Equipment module), otherwise ``X``; ``X/Z/U*`` sequences (ReferencedImageSequence,
SourceImageSequence) are kept with every UID inside replaced.

PatientName is ``Z`` in the table, which allows "a zero length value, or a non-zero length value
that may be a dummy value": NeuroNav writes the same keyed pseudonym as PatientID there (viewers and
archives need something to show), which adds nothing the PatientID does not already carry.

Attributes the table does not list are handled by the default rule (safe by default): every UI
attribute except the class and transfer syntax UIDs of :data:`UID_KEEP` and the well-known DICOM UIDs
(``1.2.840.10008.…``) is replaced (``U``); the technical attributes of :data:`SAFE_KEYWORDS` (pixel
data, geometry, acquisition parameters, functional groups, code items) are kept; everything else is
removed. Private attributes (odd groups), curves (50xx) and overlays (60xx) are always removed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword


class Action(enum.Enum):
    KEEP = "K"  # keep (sequences: keep, with their items processed by the same rules)
    REMOVE = "X"
    EMPTY = "Z"  # zero-length value (an empty sequence for SQ)
    DUMMY = "D"  # a fixed dummy value consistent with the VR
    UID = "U"  # replace by the keyed UID mapping
    SHIFT = "C"  # dates shifted by the patient's whole-day offset; times kept (Modified Dates Option)
    PSEUDONYM = "P"  # the keyed pseudonym of the value (PatientID, PatientName); a kind of D / Z


@dataclass(frozen=True)
class Rule:
    keyword: str
    tag: int
    basic: str  # Basic Profile action as Table E.1-1 prints it
    option: str  # the action of the applied option's column ("K", "C") or ""
    action: Action  # what NeuroNav does


# (basic action as printed, option column action, NeuroNav action, keywords)
_GROUPS: tuple[tuple[str, str, Action, tuple[str, ...]], ...] = (
    # --- patient identity: pseudonym (PatientID Z/D, PatientName Z: a dummy value is allowed) ---
    ("Z/D", "", Action.PSEUDONYM, ("PatientID",)),
    ("Z", "", Action.PSEUDONYM, ("PatientName",)),
    # --- emptied (Type 2 in the MR IODs) ---
    (
        "Z",
        "",
        Action.EMPTY,
        (
            "AccessionNumber",
            "ReferringPhysicianName",
            "ConsultingPhysicianName",
            "StudyID",
            "PatientBirthDate",
            "FillerOrderNumberImagingServiceRequest",
            "PlacerOrderNumberImagingServiceRequest",
            "ClinicalTrialProtocolName",
            "ClinicalTrialSiteID",
            "ClinicalTrialSiteName",
            "ClinicalTrialTimePointID",
            "ClinicalTrialCoordinatingCenterName",
            "VerifyingObserverIdentificationCodeSequence",
            "ContentDescription",  # Type 2 (SEG); NeuroNav's names the report id, which holds a date
            "DocumentTitle",  # Type 2 (Encapsulated Document); NeuroNav's names the report id
        ),
    ),
    ("Z/D", "", Action.EMPTY, ("ContrastBolusAgent", "ContentCreatorName")),
    ("X/Z", "", Action.EMPTY, ("AcquisitionContextSequence",)),
    # --- dummy value (Type 1 where they occur) ---
    ("X/Z/D", "", Action.DUMMY, ("DeviceSerialNumber",)),
    (
        "D",
        "",
        Action.DUMMY,
        (
            "ClinicalTrialSponsorName",
            "ClinicalTrialProtocolID",
            "ClinicalTrialSubjectID",
            "ClinicalTrialSubjectReadingID",
            "ClinicalTrialProtocolEthicsCommitteeName",
            "ContextGroupVersion",
            "ContextGroupLocalVersion",
            "VerifyingObserverName",
            "VerifyingOrganization",
            "PersonName",
            "DeviceLabel",
        ),
    ),
    # --- UIDs (every other UI attribute not in UID_KEEP gets the same treatment by default) ---
    (
        "U",
        "",
        Action.UID,
        (
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "SOPInstanceUID",
            "MediaStorageSOPInstanceUID",
            "FrameOfReferenceUID",
            "SynchronizationFrameOfReferenceUID",
            "ReferencedSOPInstanceUID",
            "ReferencedSOPInstanceUIDInFile",
            "ReferencedFrameOfReferenceUID",
            "RelatedFrameOfReferenceUID",
            "SourceFrameOfReferenceUID",
            "InstanceCreatorUID",
            "ConcatenationUID",
            "DimensionOrganizationUID",
            "IrradiationEventUID",
            "AcquisitionUID",
            "DeviceUID",
            "ManufacturerDeviceClassUID",
            "PaletteColorLookupTableUID",
            "LargePaletteColorLookupTableUID",
            "StorageMediaFileSetUID",
            "UID",
            "ObservationUID",
            "TargetUID",
            "TransactionUID",
            "TrackingUID",
            "FiducialUID",
            "TemplateExtensionCreatorUID",
            "TemplateExtensionOrganizationUID",
            "FailedSOPInstanceUIDList",
            "PyramidUID",
        ),
    ),
    # --- kept sequences whose UIDs are replaced (X/Z/U*) ---
    ("X/Z/U*", "", Action.KEEP, ("ReferencedImageSequence", "SourceImageSequence")),
    # --- Retain Patient Characteristics Option ---
    ("Z", "K", Action.KEEP, ("PatientSex",)),
    ("X/Z", "K", Action.KEEP, ("PatientSexNeutered",)),
    (
        "X",
        "K",
        Action.KEEP,
        ("PatientAge", "PatientSize", "PatientWeight", "EthnicGroup", "SmokingStatus", "PregnancyStatus"),
    ),
    # --- Retain Longitudinal Temporal Information with Modified Dates Option ---
    ("Z", "C", Action.SHIFT, ("StudyDate", "StudyTime")),
    ("Z/D", "C", Action.SHIFT, ("ContentDate", "ContentTime", "InstructionPerformedDateTime")),
    ("X/Z", "C", Action.SHIFT, ("AcquisitionDate", "AcquisitionTime")),
    ("X/Z/D", "C", Action.SHIFT, ("AcquisitionDateTime", "InstanceCreationTime")),
    (
        "X/D",
        "C",
        Action.SHIFT,
        (
            "SeriesDate",
            "SeriesTime",
            "InstanceCreationDate",
            "StartAcquisitionDateTime",
            "EndAcquisitionDateTime",
            "ObservationDateTime",
        ),
    ),
    ("D", "C", Action.SHIFT, ("FrameAcquisitionDateTime", "FrameReferenceDateTime")),
    # SR content item values and the verification (Clean Structured Content: dates of the content shifted)
    ("X", "C", Action.SHIFT, ("Date", "Time", "DateTime", "VerificationDateTime")),
    ("X/D", "C", Action.SHIFT, ("DateOfSecondaryCapture", "TimeOfSecondaryCapture")),
    (
        "X",
        "C",
        Action.SHIFT,
        (
            "PerformedProcedureStepStartDate",
            "PerformedProcedureStepStartTime",
            "PerformedProcedureStepEndDate",
            "PerformedProcedureStepEndTime",
            "ContrastBolusStartTime",
            "ContrastBolusStopTime",
            "LastMenstrualDate",
        ),
    ),
    # --- removed: descriptions (the Clean Descriptors Option is not implemented) ---
    (
        "X",
        "",
        Action.REMOVE,
        (
            "StudyDescription",
            "SeriesDescription",
            "AcquisitionComments",
            "AcquisitionProtocolDescription",
            "AdditionalPatientHistory",
            "AdmittingDiagnosesDescription",
            "AdmittingDiagnosesCodeSequence",
            "Allergies",
            "CommentsOnThePerformedProcedureStep",
            "DerivationDescription",
            "FrameComments",
            "IdentifyingComments",
            "ImageComments",
            "ImagePresentationComments",
            "MedicalAlerts",
            "PatientComments",
            "PatientState",
            "PerformedProcedureStepDescription",
            "ReasonForStudy",
            "ReasonForTheRequestedProcedure",
            "ReasonForTheImagingServiceRequest",
            "ReasonForVisit",
            "ReasonForVisitCodeSequence",
            "RequestedContrastAgent",
            "RequestedProcedureComments",
            "RequestedSeriesDescription",
            "ImagingServiceRequestComments",
            "ScheduledProcedureStepDescription",
            "SpecialNeeds",
            "StudyComments",
            "VisitComments",
            "TextComments",
            "RespiratoryMotionCompensationTechniqueDescription",
            "ClinicalTrialSeriesDescription",
            "ClinicalTrialTimePointDescription",
            "ContributionDescription",
        ),
    ),
    ("X/D", "", Action.REMOVE, ("ProtocolName", "AcquisitionDeviceProcessingDescription")),
    ("X/Z", "", Action.REMOVE, ("RequestedProcedureDescription",)),
    # --- removed: other patient identifiers, addresses and demographics ---
    (
        "X",
        "",
        Action.REMOVE,
        (
            "PatientBirthTime",
            "PatientBirthName",
            "PatientMotherBirthName",
            "OtherPatientIDs",
            "OtherPatientIDsSequence",
            "OtherPatientNames",
            "IssuerOfPatientID",
            "PatientAddress",
            "PatientTelephoneNumbers",
            "PatientTelecomInformation",
            "PatientReligiousPreference",
            "PatientPrimaryLanguageCodeSequence",
            "PatientInsurancePlanCodeSequence",
            "InsurancePlanIdentification",
            "MedicalRecordLocator",
            "MilitaryRank",
            "BranchOfService",
            "CountryOfResidence",
            "RegionOfResidence",
            "Occupation",
            "ResponsiblePerson",
            "ResponsibleOrganization",
            "ReferencedPatientSequence",
            "ReferencedPatientAliasSequence",
            "ReferencedPatientPhotoSequence",
            "AdmissionID",
            "IssuerOfAdmissionID",
            "ServiceEpisodeID",
            "ServiceEpisodeDescription",
            "CurrentPatientLocation",
            "PatientTransportArrangements",
            "ClinicalTrialSeriesID",
            "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
            "IssuerOfClinicalTrialProtocolID",
            "IssuerOfClinicalTrialSubjectID",
            "IssuerOfClinicalTrialSiteID",
            "StudyIDIssuer",
        ),
    ),
    # --- removed: physicians, operators, institution, stations, requests ---
    (
        "X",
        "",
        Action.REMOVE,
        (
            "ReferringPhysicianAddress",
            "ReferringPhysicianTelephoneNumbers",
            "ReferringPhysicianIdentificationSequence",
            "ConsultingPhysicianIdentificationSequence",
            "PhysiciansOfRecord",
            "PhysiciansOfRecordIdentificationSequence",
            "NameOfPhysiciansReadingStudy",
            "PhysiciansReadingStudyIdentificationSequence",
            "PerformingPhysicianName",
            "PerformingPhysicianIdentificationSequence",
            "RequestingPhysician",
            "RequestingService",
            "ScheduledPerformingPhysicianName",
            "NamesOfIntendedRecipientsOfResults",
            "OrderEnteredBy",
            "OrderEntererLocation",
            "OrderCallbackPhoneNumber",
            "PersonAddress",
            "PersonTelephoneNumbers",
            "InstitutionAddress",
            "InstitutionalDepartmentName",
            "PerformedLocation",
            "PerformedStationAETitle",
            "PerformedStationName",
            "PerformedStationNameCodeSequence",
            "PerformedProcedureStepID",
            "RetrieveAETitle",
            "ScheduledStationAETitle",
            "ScheduledStationName",
            "ScheduledStudyLocation",
            "ScheduledProcedureStepID",
            "RequestAttributesSequence",
            "RequestedProcedureID",
            "RequestedProcedureLocation",
            "PreMedication",
            "NetworkID",
            "TimezoneOffsetFromUTC",
            "GantryID",
            "GeneratorID",
            "PlateID",
            "CassetteID",
            "UniqueDeviceIdentifier",
            "UDISequence",
            "DeviceDescription",
            "LongDeviceDescription",
            "DateOfLastCalibration",
            "TimeOfLastCalibration",
            "OverlayDate",
            "OverlayTime",
            "CurveDate",
            "CurveTime",
            "InterventionDrugStartTime",
            "InterventionDrugStopTime",
        ),
    ),
    (
        "X/Z/D",
        "",
        Action.REMOVE,
        (
            "InstitutionName",
            "InstitutionCodeSequence",
            "OperatorsName",
            "StationName",
        ),
    ),
    ("X/Z/D", "", Action.EMPTY, ("ReferencedPerformedProcedureStepSequence",)),  # Type 2 in the SR IODs
    ("X/D", "", Action.REMOVE, ("OperatorIdentificationSequence", "DetectorID")),
    ("X/Z", "", Action.REMOVE, ("ReferencedStudySequence",)),
    # --- removed: sequences that may carry copies of identifying values ---
    (
        "X",
        "",
        Action.REMOVE,
        (
            "OriginalAttributesSequence",
            "ModifiedAttributesSequence",
            "DigitalSignaturesSequence",
            "IconImageSequence",
            "DataSetTrailingPadding",
            "ActualHumanPerformersSequence",
            "ScheduledHumanPerformersSequence",
            "HumanPerformerName",
            "HumanPerformerOrganization",
            "AuthorObserverSequence",
            "ParticipantSequence",
            "CustodialOrganizationSequence",
            "ReferencedDigitalSignatureSequence",
            "ReferencedSOPInstanceMACSequence",
            "MAC",
        ),
    ),
    # D in the table, Type 1 only in SR / presentation state IODs: removed from images (E.1.1 note 13)
    ("D", "", Action.REMOVE, ("GraphicAnnotationSequence", "PersonIdentificationCodeSequence")),
    # the document of an Encapsulated PDF: free text and pictures; replaced by a placeholder PDF
    ("X", "", Action.REMOVE, ("EncapsulatedDocument", "EncapsulatedDocumentLength")),
    # Type 1C in the SR IODs (a verified report): kept, its name and organisation dummies, its date shifted
    ("D", "", Action.KEEP, ("VerifyingObserverSequence",)),
)

# Class, transfer syntax and coding-scheme UIDs: identify kinds of things, never a patient. Kept.
UID_KEEP: frozenset[str] = frozenset(
    {
        "SOPClassUID",
        "ReferencedSOPClassUID",
        "MediaStorageSOPClassUID",
        "ReferencedSOPClassUIDInFile",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "EncryptedContentTransferSyntaxUID",
        "ImplementationClassUID",
        "AffectedSOPClassUID",
        "RequestedSOPClassUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "SOPClassesInStudy",
    }
)

# Technical attributes that identify nobody: kept when the table does not list them.
SAFE_KEYWORDS: frozenset[str] = frozenset(
    {
        # SOP common, general image, image pixel
        "SpecificCharacterSet",
        "SOPClassUID",
        "InstanceNumber",
        "ImageType",
        "Modality",
        "SeriesNumber",
        "AcquisitionNumber",
        "ContentQualification",
        "PatientPosition",
        "BodyPartExamined",
        "AnatomicRegionSequence",
        "AnatomicRegionModifierSequence",
        "PrimaryAnatomicStructureSequence",
        "Laterality",
        "ImageLaterality",
        "FrameLaterality",
        "PatientOrientation",
        "ImagesInAcquisition",
        "QualityControlImage",
        "BurnedInAnnotation",
        "RecognizableVisualFeatures",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "PresentationLUTShape",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PlanarConfiguration",
        "PixelAspectRatio",
        "SmallestImagePixelValue",
        "LargestImagePixelValue",
        "PixelPaddingValue",
        "PixelPaddingRangeLimit",
        "PixelData",
        "FloatPixelData",
        "DoubleFloatPixelData",
        "ExtendedOffsetTable",
        "ExtendedOffsetTableLengths",
        "NumberOfFrames",
        "FrameIncrementPointer",
        "RescaleSlope",
        "RescaleIntercept",
        "RescaleType",
        "WindowCenter",
        "WindowWidth",
        "WindowCenterWidthExplanation",
        "VOILUTFunction",
        "PresentationIntentType",
        # geometry
        "PixelSpacing",
        "SliceThickness",
        "SpacingBetweenSlices",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "SliceLocation",
        "PositionReferenceIndicator",
        "TemporalPositionIdentifier",
        "NumberOfTemporalPositions",
        "TemporalResolution",
        "StackID",
        "InStackPositionNumber",
        # equipment (not identifying; DeviceSerialNumber, StationName, institution are in the table)
        "Manufacturer",
        "ManufacturerModelName",
        "SoftwareVersions",
        "SpatialResolution",
        # MR image and acquisition parameters
        "ScanningSequence",
        "SequenceVariant",
        "ScanOptions",
        "MRAcquisitionType",
        "SequenceName",
        "PulseSequenceName",
        "AngioFlag",
        "RepetitionTime",
        "EchoTime",
        "InversionTime",
        "NumberOfAverages",
        "ImagingFrequency",
        "ImagedNucleus",
        "ResonantNucleus",
        "EchoNumbers",
        "MagneticFieldStrength",
        "NumberOfPhaseEncodingSteps",
        "EchoTrainLength",
        "PercentSampling",
        "PercentPhaseFieldOfView",
        "PixelBandwidth",
        "TriggerTime",
        "NominalInterval",
        "BeatRejectionFlag",
        "LowRRValue",
        "HighRRValue",
        "IntervalsAcquired",
        "IntervalsRejected",
        "HeartRate",
        "CardiacNumberOfImages",
        "TriggerWindow",
        "ReconstructionDiameter",
        "ReceiveCoilName",
        "TransmitCoilName",
        "AcquisitionMatrix",
        "InPlanePhaseEncodingDirection",
        "FlipAngle",
        "VariableFlipAngleFlag",
        "SAR",
        "dBdt",
        "B1rms",
        "AcquisitionDuration",
        "FrameAcquisitionDuration",
        "DiffusionBValue",
        "DiffusionGradientOrientation",
        "DiffusionDirectionality",
        "DiffusionBMatrixSequence",
        "DiffusionGradientDirectionSequence",
        "DiffusionAnisotropyType",
        "MRDiffusionSequence",
        "MRAcquisitionFrequencyEncodingSteps",
        "MRAcquisitionPhaseEncodingStepsInPlane",
        "MRAcquisitionPhaseEncodingStepsOutOfPlane",
        "FrameTime",
        "KSpaceFiltering",
        "ApplicableSafetyStandardAgency",
        "ComplexImageComponent",
        "AcquisitionContrast",
        "PixelPresentation",
        "VolumetricProperties",
        "VolumeBasedCalculationTechnique",
        "MultipleSpinEcho",
        "MultiPlanarExcitation",
        "PhaseContrast",
        "TimeOfFlightContrast",
        "Spoiling",
        "SteadyStatePulseSequence",
        "EchoPlanarPulseSequence",
        "OversamplingPhase",
        "GeometryOfKSpaceTraversal",
        "SegmentedKSpaceTraversal",
        "RectilinearPhaseEncodeReordering",
        "NumberOfKSpaceTrajectories",
        "CoverageOfKSpace",
        "SaturationRecovery",
        "SpectrallySelectedSuppression",
        "SpectrallySelectedExcitation",
        "ParallelAcquisition",
        "ParallelAcquisitionTechnique",
        "ParallelReductionFactorInPlane",
        "ParallelReductionFactorOutOfPlane",
        "ParallelReductionFactorSecondInPlane",
        "PartialFourier",
        "PartialFourierDirection",
        "InversionRecovery",
        "InversionTimes",
        "FlowCompensation",
        "FlowCompensationDirection",
        "T2Preparation",
        "EffectiveEchoTime",
        "RFEchoTrainLength",
        "GradientEchoTrainLength",
        "ReceiveCoilManufacturerName",
        "ReceiveCoilType",
        "QuadratureReceiveCoil",
        "TransmitCoilManufacturerName",
        "TransmitCoilType",
        "MagnetizationTransfer",
        "BloodSignalNulling",
        "Tagging",
        "SpecificAbsorptionRateDefinition",
        "SpecificAbsorptionRateValue",
        "GradientOutputType",
        "GradientOutput",
        "OperatingModeType",
        "OperatingMode",
        "FrameType",
        # contrast (the free-text ContrastBolusAgent is emptied by the table; codes are kept)
        "ContrastBolusRoute",
        "ContrastBolusVolume",
        "ContrastBolusTotalDose",
        "ContrastBolusIngredient",
        "ContrastBolusIngredientConcentration",
        "ContrastFlowRate",
        "ContrastFlowDuration",
        "ContrastBolusAgentSequence",
        "ContrastBolusAdministrationRouteSequence",
        "ContrastBolusIngredientCodeSequence",
        "ContrastBolusAgentNumber",
        "ContrastBolusAgentAdministered",
        "ContrastBolusAgentDetected",
        "ContrastBolusAgentPhase",
        "ContrastBolusUsageSequence",
        # enhanced (multi-frame) functional groups and dimensions
        "SharedFunctionalGroupsSequence",
        "PerFrameFunctionalGroupsSequence",
        "PixelMeasuresSequence",
        "PlanePositionSequence",
        "PlaneOrientationSequence",
        "FrameContentSequence",
        "FrameAcquisitionNumber",
        "DimensionIndexValues",
        "TemporalPositionIndex",
        "PixelValueTransformationSequence",
        "FrameVOILUTSequence",
        "MRImageFrameTypeSequence",
        "MRTimingAndRelatedParametersSequence",
        "MREchoSequence",
        "MRModifierSequence",
        "MRFOVGeometrySequence",
        "MRReceiveCoilSequence",
        "MRTransmitCoilSequence",
        "MRAveragesSequence",
        "MRImagingModifierSequence",
        "FrameAnatomySequence",
        "DerivationImageSequence",
        "DerivationCodeSequence",
        "PurposeOfReferenceCodeSequence",
        "SpecificAbsorptionRateSequence",
        "OperatingModeSequence",
        "CardiacSynchronizationSequence",
        "RespiratorySynchronizationSequence",
        "IrradiationEventIdentificationSequence",
        "RealWorldValueMappingSequence",
        "RealWorldValueFirstValueMapped",
        "RealWorldValueLastValueMapped",
        "RealWorldValueSlope",
        "RealWorldValueIntercept",
        "DoubleFloatRealWorldValueFirstValueMapped",
        "DoubleFloatRealWorldValueLastValueMapped",
        "LUTExplanation",
        "LUTLabel",
        "MeasurementUnitsCodeSequence",
        "DimensionOrganizationSequence",
        "DimensionIndexSequence",
        "DimensionIndexPointer",
        "FunctionalGroupPointer",
        "DimensionDescriptionLabel",
        "DimensionOrganizationType",
        # references (their UIDs are replaced by the default UI rule)
        "ReferencedSeriesSequence",
        "ReferencedInstanceSequence",
        "ReferencedFrameOfReferenceSequence",
        "ReferencedFrameNumber",
        "ReferencedSegmentNumber",
        "SpatialLocationsPreserved",
        # code sequence items (PS3.15 E.1.1 note 10: coded entries are safe)
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "LongCodeValue",
        "URNCodeValue",
        "ContextIdentifier",
        "MappingResource",
        "MappingResourceName",
        "ContextGroupExtensionFlag",
        "EquivalentCodeSequence",
        # Segmentation IOD (the segment labels, tracking IDs and algorithm names are NeuroNav's own, coded
        # or generated, and name no person; TrackingUID is a UID and replaced)
        "SegmentationType",
        "SegmentationFractionalType",
        "MaximumFractionalValue",
        "SegmentsOverlap",
        "SegmentSequence",
        "SegmentNumber",
        "SegmentLabel",
        "SegmentAlgorithmType",
        "SegmentAlgorithmName",
        "SegmentedPropertyCategoryCodeSequence",
        "SegmentedPropertyTypeCodeSequence",
        "SegmentedPropertyTypeModifierCodeSequence",
        "RecommendedDisplayCIELabValue",
        "RecommendedDisplayGrayscaleValue",
        "TrackingID",
        "SegmentIdentificationSequence",
        "ContentLabel",
        "SegmentationAlgorithmIdentificationSequence",
        "AlgorithmFamilyCodeSequence",
        "AlgorithmNameCodeSequence",
        "AlgorithmName",
        "AlgorithmVersion",
        "AlgorithmSource",
        "AlgorithmParameters",
        # SR document general and content (Clean Structured Content: TextValue by its concept, see
        # SAFE_TEXT_CONCEPTS; PersonName dummy, dates shifted and UIDs replaced by the table)
        "ValueType",
        "RelationshipType",
        "ContinuityOfContent",
        "ContentSequence",
        "ContentTemplateSequence",
        "TemplateIdentifier",
        "ConceptNameCodeSequence",
        "ConceptCodeSequence",
        "MeasuredValueSequence",
        "NumericValue",
        "FloatingPointValue",
        "RationalNumeratorValue",
        "RationalDenominatorValue",
        "NumericValueQualifierCodeSequence",
        "GraphicType",
        "GraphicData",
        "PixelOriginInterpretation",
        "ReferencedSOPSequence",
        "ReferencedContentItemIdentifier",
        "CompletionFlag",
        "VerificationFlag",
        "PreliminaryFlag",
        "PerformedProcedureCodeSequence",
        "CurrentRequestedProcedureEvidenceSequence",
        "PertinentOtherEvidenceSequence",
        "CodingSchemeIdentificationSequence",
        "CodingSchemeName",
        "CodingSchemeResponsibleOrganization",
        "CodingSchemeRegistry",
        "CodingSchemeExternalID",
        # Encapsulated PDF (the document itself is replaced by the de-identifier) and Secondary Capture
        "MIMETypeOfEncapsulatedDocument",
        "DocumentClassCodeSequence",
        "SourceInstanceSequence",
        "ConversionType",
        "SecondaryCaptureDeviceManufacturer",
        "SecondaryCaptureDeviceManufacturerModelName",
        "SecondaryCaptureDeviceSoftwareVersions",
        "RelatedSeriesSequence",
        # the de-identification record (rewritten by the de-identifier)
        "PatientIdentityRemoved",
        "LongitudinalTemporalInformationModified",
    }
)


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown DICOM keyword {keyword!r} in the de-identification table")
    return int(tag)


def _build() -> dict[int, Rule]:
    table: dict[int, Rule] = {}
    for basic, option, action, keywords in _GROUPS:
        for keyword in keywords:
            tag = _tag(keyword)
            if tag in table:
                raise ValueError(f"{keyword} appears twice in the de-identification table")
            table[tag] = Rule(keyword, tag, basic, option, action)
    return table


TABLE: dict[int, Rule] = _build()
"""Table E.1-1 rows NeuroNav applies, by tag."""

SAFE_TAGS: frozenset[int] = frozenset(_tag(k) for k in SAFE_KEYWORDS)

# Clean Structured Content: the SR TEXT items whose value is kept, by concept name (coding scheme, value).
# Tracking identifiers, algorithm and device identification (software, not a person), and NeuroNav's
# own private concepts, whose texts are generated from the findings (atlas location, tumour type,
# midline level, disclaimers). Every other TEXT value is replaced by a dummy.
SAFE_TEXT_CONCEPTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("DCM", "112039"),  # Tracking Identifier
        ("DCM", "111001"),  # Algorithm Name
        ("DCM", "111002"),  # Algorithm Parameters
        ("DCM", "111003"),  # Algorithm Version
        ("DCM", "122405"),  # Algorithm Manufacturer
        ("DCM", "121013"),  # Device Observer Name
        ("DCM", "121014"),  # Device Observer Manufacturer
        ("DCM", "121015"),  # Device Observer Model Name
    }
)
SAFE_TEXT_SCHEMES: frozenset[str] = frozenset({"99NEURONAV"})
UID_KEEP_TAGS: frozenset[int] = frozenset(_tag(k) for k in UID_KEEP)
WELL_KNOWN_UID_ROOT = "1.2.840.10008."

# DeidentificationMethodCodeSequence (PS3.16 CID 7050): the profile and the two options applied.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
RETAIN_DATES_CODE = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
RETAIN_CHARACTERISTICS_CODE = ("113108", "Retain Patient Characteristics Option")
METHOD_CODES: tuple[tuple[str, str], ...] = (BASIC_PROFILE_CODE, RETAIN_DATES_CODE, RETAIN_CHARACTERISTICS_CODE)
RETAIN_DATES_OPTION = "C"  # the option column of the Modified Dates Option in Rule.option
RETAIN_CHARACTERISTICS_OPTION = "K"  # the option column of the Patient Characteristics Option


def basic_action(basic: str) -> Action:
    """The action NeuroNav takes for a Basic Profile column entry (an option's row with the option off):
    ``D`` where allowed (a dummy keeps a Type 1 attribute valid), else ``Z``, else ``X``."""
    choices = set(basic.replace("*", "").split("/"))
    if "D" in choices:
        return Action.DUMMY
    if "Z" in choices:
        return Action.EMPTY
    if choices == {"X"}:
        return Action.REMOVE
    raise ValueError(f"no Basic Profile action for {basic!r}")


def method_codes(
    *, retain_dates: bool = True, retain_patient_characteristics: bool = True
) -> tuple[tuple[str, str], ...]:
    """The DeidentificationMethodCodeSequence codes of the profile with the options applied."""
    return (
        BASIC_PROFILE_CODE,
        *((RETAIN_DATES_CODE,) if retain_dates else ()),
        *((RETAIN_CHARACTERISTICS_CODE,) if retain_patient_characteristics else ()),
    )


DE_IDENTIFYING_EQUIPMENT = ("109104", "De-identifying Equipment")  # CID 7005 purpose of reference

DATE_SHIFT_MIN_DAYS = 1
DATE_SHIFT_MAX_DAYS = 365  # the per-patient shift is −365 … −1 days


def method_description(*, retain_dates: bool = True, retain_patient_characteristics: bool = True) -> str:
    """The DeidentificationMethod text (each value fits a DICOM LO: at most 64 characters)."""
    return "\\".join(
        method_values(retain_dates=retain_dates, retain_patient_characteristics=retain_patient_characteristics)
    )


def method_values(*, retain_dates: bool = True, retain_patient_characteristics: bool = True) -> tuple[str, ...]:
    """The values of DeidentificationMethod (LO, multi-valued): what was done, in words."""
    return (
        "NeuroNav PS3.15 E Basic Application Confidentiality Profile",
        *(("Retain Longitudinal Temporal Info Modified Dates Option",) if retain_dates else ()),
        *(("Retain Patient Characteristics Option",) if retain_patient_characteristics else ()),
        "Dates shifted per patient by a keyed offset of whole days"
        if retain_dates
        else "Dates and times removed, emptied or set to dummy values",
        "UIDs and patient IDs replaced by keyed HMAC-SHA256",
        "Private attributes, overlays and curves removed",
        "Descriptors removed; Clean Descriptors Option not applied",
        "Pixel data not cleaned; no defacing",
    )
