"""Fake, deterministic DICOM metadata for phantom studies (no real person, no real site).

Vendor naming styles vary with the seed so that sequence identification is tested on the names
scanners actually write (Siemens-, GE- and Philips-like).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import numpy as np

from neuronav.phantom._geometry import SeriesSpec

VENDORS = ("siemens", "ge", "philips")

_MODELS = {
    "siemens": ("SIEMENS", ("MAGNETOM Prisma", "MAGNETOM Skyra", "MAGNETOM Aera")),
    "ge": ("GE MEDICAL SYSTEMS", ("SIGNA Premier", "DISCOVERY MR750", "SIGNA Artist")),
    "philips": ("Philips Medical Systems", ("Ingenia", "Achieva dStream", "Ingenia Elition X")),
}

_SIEMENS_ORI = {"axial": "tra", "sagittal": "sag", "coronal": "cor", "oblique": "tra"}
_GE_ORI = {"axial": "Ax", "sagittal": "Sag", "coronal": "Cor", "oblique": "Obl"}


def series_description(vendor: str, seq: str, spec: SeriesSpec) -> str:
    """The SeriesDescription a scanner of ``vendor`` would write for this sequence and geometry."""
    three_d = spec.acquisition == "3D"
    if vendor == "siemens":
        o = _SIEMENS_ORI[spec.orientation]
        if seq == "T1":
            return f"t1_mprage_{o}_p2_iso" if three_d else f"t1_se_{o}"
        if seq == "T1c":
            return f"t1_mprage_{o}_p2_iso_post" if three_d else f"t1_se_{o}_KM"
        if seq == "T2":
            return f"t2_spc_{o}_p2_iso" if three_d else f"t2_tse_{o}"
        return f"t2_space_dark-fluid_{o}_p2_iso" if three_d else f"t2_tirm_{o}_dark-fluid"
    if vendor == "ge":
        o = _GE_ORI[spec.orientation]
        if seq == "T1":
            return f"{o} 3D BRAVO" if three_d else f"{o} T1 FLAIR"
        if seq == "T1c":
            return f"{o} 3D BRAVO +C" if three_d else f"{o} T1 SE +C"
        if seq == "T2":
            return f"{o} CUBE T2" if three_d else f"{o} T2 FSE"
        return f"{o} CUBE T2 FLAIR" if three_d else f"{o} T2 FLAIR"
    if seq == "T1":
        return "T1W_3D_TFE" if three_d else "T1W_SE"
    if seq == "T1c":
        return "T1W_3D_TFE_Gd" if three_d else "T1W_SE_Gd"
    if seq == "T2":
        return "T2W_3D_TSE" if three_d else "T2W_TSE"
    return "T2W_3D_FLAIR" if three_d else "T2W_FLAIR"


def uid_for(key: str, *parts: object) -> str:
    """A deterministic UID under the 2.25 root (PS3.5 B.2) from a name-based (v5-style) UUID."""
    digest = hashlib.sha256("/".join([key, *map(str, parts)]).encode()).digest()
    return "2.25." + str(uuid.UUID(bytes=digest[:16], version=5).int)


class UidSource:
    """Deterministic UIDs for one study: a callable that returns the next UID of a stream."""

    def __init__(self, key: str, stream: str) -> None:
        self._key = key
        self._stream = stream
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return uid_for(self._key, self._stream, self._n)


def study_attributes(rng: np.random.Generator, seed: int, key: str, vendor: str) -> dict[str, Any]:
    manufacturer, models = _MODELS[vendor]
    birth_year = int(rng.integers(1940, 2001))
    birth = f"{birth_year:04d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    date = f"{int(rng.integers(2019, 2025)):04d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    hour = int(rng.integers(7, 19))
    return {
        "StudyInstanceUID": uid_for(key, "study"),
        "FrameOfReferenceUID": uid_for(key, "frame-of-reference"),
        "PatientName": f"Phantom^Seed{seed:04d}",
        "PatientID": f"PHANTOM-{seed:06d}",
        "IssuerOfPatientID": "NEURONAV-PHANTOM",
        "PatientBirthDate": birth,
        "PatientSex": str(rng.choice(["F", "M"])),
        "PatientAge": f"{max(int(date[:4]) - birth_year, 1):03d}Y",
        "StudyDate": date,
        "StudyTime": f"{hour:02d}{int(rng.integers(0, 60)):02d}00",
        "StudyDescription": "MRI BRAIN WITH AND WITHOUT CONTRAST",
        "StudyID": str(int(rng.integers(1000, 99999))),
        "AccessionNumber": f"PH{int(rng.integers(10**7, 10**8))}",
        "ReferringPhysicianName": "Referrer^Phantom",
        "InstitutionName": "NeuroNav Phantom Site",
        "BodyPartExamined": "BRAIN",
        "Manufacturer": manufacturer,
        "ManufacturerModelName": str(rng.choice(models)),
        "MagneticFieldStrength": float(rng.choice([1.5, 3.0])),
        "DeviceSerialNumber": str(int(rng.integers(10000, 99999))),
        "SoftwareVersions": "NEURONAV-PHANTOM",
    }


def series_attributes(
    rng: np.random.Generator,
    key: str,
    vendor: str,
    seq: str,
    spec: SeriesSpec,
    position: int,
    study: dict[str, Any],
) -> dict[str, Any]:
    """Series-level attributes; ``position`` is the 1-based place in acquisition order."""
    description = series_description(vendor, seq, spec)
    number = position * 100 + 1 if vendor == "philips" else position + 1
    field = float(study["MagneticFieldStrength"])
    three_d = spec.acquisition == "3D"
    attrs: dict[str, Any] = {
        "SeriesInstanceUID": uid_for(key, "series", seq, position),
        "SeriesNumber": number,
        "SeriesDescription": description,
        "ProtocolName": "BRAIN TUMOR W WO" if vendor == "ge" else description,
        "MRAcquisitionType": spec.acquisition,
        "ImagingFrequency": round(42.577478 * field, 6),
        "ImagedNucleus": "1H",
        "SeriesTime": f"{int(study['StudyTime'][:2]):02d}{(position * 6) % 60:02d}00",
        "PatientPosition": "HFS",
    }
    if seq in ("T1", "T1c"):
        if three_d:
            attrs.update(
                ScanningSequence=["GR", "IR"],
                SequenceVariant=["SK", "SP", "MP"],
                RepetitionTime=round(
                    float(rng.uniform(1800, 2300)) if vendor == "siemens" else float(rng.uniform(6.5, 9.0)), 2
                ),
                EchoTime=round(float(rng.uniform(2.2, 3.4)), 2),
                InversionTime=round(float(rng.uniform(450, 1000)), 1),
                FlipAngle=round(float(rng.uniform(8, 13)), 1),
                EchoTrainLength=1,
            )
        else:
            attrs.update(
                ScanningSequence=["SE"],
                SequenceVariant=["SK", "SP"],
                RepetitionTime=round(float(rng.uniform(450, 650)), 1),
                EchoTime=round(float(rng.uniform(8, 15)), 2),
                FlipAngle=90.0,
                EchoTrainLength=3,
            )
        if seq == "T1c":
            attrs.update(
                ContrastBolusAgent="Gadobutrol",
                ContrastBolusVolume=round(float(rng.uniform(5.0, 9.0)), 1),
                ContrastBolusRoute="IV",
            )
    elif seq == "T2":
        attrs.update(
            ScanningSequence=["SE"],
            SequenceVariant=["SK", "SP", "OSP"],
            RepetitionTime=round(float(rng.uniform(3000, 6000)), 1),
            EchoTime=round(float(rng.uniform(85, 110)), 2),
            FlipAngle=float(rng.choice([90.0, 150.0])),
            EchoTrainLength=int(rng.integers(12, 24)),
        )
    else:
        attrs.update(
            ScanningSequence=["SE", "IR"],
            SequenceVariant=["SK", "SP", "MP"],
            RepetitionTime=round(float(rng.uniform(7000, 10000)) if not three_d else float(rng.uniform(4800, 6000)), 1),
            EchoTime=round(float(rng.uniform(80, 130)), 2),
            InversionTime=round(float(rng.uniform(1800, 2500)), 1),
            FlipAngle=float(rng.choice([90.0, 150.0])),
            EchoTrainLength=int(rng.integers(16, 200)),
        )
    return attrs
