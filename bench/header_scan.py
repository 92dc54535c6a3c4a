"""Header scan throughput: the inventory of 10,000 DICOM files on one core.

Usage:  .venv/bin/python bench/header_scan.py [--files 10000]

Writes 10,000 single-frame MR files (50 series × 200 slices, 64×64 pixels) whose headers carry about
the attribute count of a scanner's file plus a 6 kB private vendor block (as Siemens' CSA headers
do), then times ``neuronav.ingest.scan`` side by side with the plainest pydicom loop
(``dcmread(stop_before_pixels=True)`` per file, no validation, no grouping).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, machine, pin_to_one_core, print_ratio

VENDOR_TAGS = {
    "Manufacturer": "SIEMENS",
    "ManufacturerModelName": "Prisma",
    "MagneticFieldStrength": "3",
    "InstitutionName": "Bench Hospital",
    "StationName": "MRC12345",
    "SoftwareVersions": "syngo MR XA30",
    "ScanningSequence": "GR\\IR",
    "SequenceVariant": "SK\\SP\\MP",
    "ScanOptions": "IR",
    "MRAcquisitionType": "3D",
    "SequenceName": "*tfl3d1_16ns",
    "RepetitionTime": "2300",
    "EchoTime": "2.98",
    "InversionTime": "900",
    "FlipAngle": "9",
    "NumberOfAverages": "1",
    "ImagingFrequency": "123.2",
    "ImagedNucleus": "1H",
    "EchoNumbers": "1",
    "EchoTrainLength": "1",
    "PercentSampling": "100",
    "PercentPhaseFieldOfView": "100",
    "PixelBandwidth": "240",
    "DeviceSerialNumber": "12345",
    "ProtocolName": "t1_mprage_sag_p2_iso",
    "TransmitCoilName": "Body",
    "AcquisitionMatrix": [0, 256, 256, 0],
    "InPlanePhaseEncodingDirection": "ROW",
    "SAR": "0.05",
    "dBdt": "0",
    "PatientPosition": "HFS",
    "BodyPartExamined": "HEAD",
    "StudyDescription": "MRI BRAIN",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "PatientAge": "054Y",
    "PatientWeight": "70",
    "OperatorsName": "Tech^A",
    "PerformingPhysicianName": "Dr^B",
}


def write_files(folder: Path, n_files: int) -> None:
    from pydicom.dataset import Dataset

    from neuronav.volume import Volume
    from neuronav.volume.dicom_write import new_uid, write_dicom_series

    per_series = 200
    rng = np.random.default_rng(0)
    for s in range((n_files + per_series - 1) // per_series):
        n = min(per_series, n_files - s * per_series)
        vol = Volume(rng.integers(0, 1000, (64, 64, n)).astype(np.int16), np.diag([1.0, 1.0, 1.0, 1.0]))
        series = {
            "SeriesInstanceUID": new_uid(),
            "SeriesNumber": s + 1,
            "SeriesDescription": f"series {s}",
            **VENDOR_TAGS,
        }
        files = write_dicom_series(
            vol,
            folder / f"s{s:03d}",
            study={"StudyInstanceUID": new_uid(), "PatientID": f"B{s}", "PatientName": "Bench^Patient"},
            series=series,
        )
        from pydicom import dcmread

        blob = bytes(rng.integers(0, 256, 6000, dtype=np.uint8))
        for f in files:  # add a vendor private block, as scanners do
            ds = dcmread(f)
            block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
            block.add_new(0x10, "OB", blob)
            block.add_new(0x20, "OB", blob)
            ds.ReferencedImageSequence = [Dataset()]
            ds.save_as(f)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from pydicom import dcmread

    from neuronav.ingest import scan

    core = pin_to_one_core()
    work = Path(tempfile.mkdtemp(prefix="nn-bench-scan-"))
    try:
        write_files(work, args.files)
        files = sorted(p for p in work.rglob("*.dcm"))

        def ours() -> None:
            inv = scan([work])
            if inv.n_instances != args.files or inv.problems:
                raise SystemExit(f"scan found {inv.n_instances} instances, problems: {inv.problems[:3]}")

        def peer() -> None:
            for f in files:
                dcmread(f, stop_before_pixels=True)

        ours()
        peer()  # warm the page cache
        t_ours, _ = best_of(ours, args.repeats)
        t_peer, _ = best_of(peer, args.repeats)
        print(f"machine: {machine()}; pinned to core {core}")
        print(f"files: {len(files)} ({sum(f.stat().st_size for f in files) / len(files) / 1024:.1f} kB each)")
        print_ratio(
            f"Header scan of {args.files} files (median of {args.repeats})",
            "NeuroNav scan (validate + group + metadata)",
            t_ours,
            "pydicom dcmread(stop_before_pixels) loop",
            t_peer,
            "informational",
        )
        rate = args.files / t_ours
        print(f"  NeuroNav throughput: {rate:,.0f} files/s on one core (target ≥ 3,000)")
        return 0 if rate >= 3000 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
