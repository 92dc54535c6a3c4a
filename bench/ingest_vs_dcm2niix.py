"""Ingest + volume build of a 4-series phantom study, side by side with dcm2niix on the same files.

Usage:  .venv/bin/python bench/ingest_vs_dcm2niix.py [--repeats 5] [--seed 7]

Both sides run on one core. dcm2niix converts the folder to uncompressed NIfTI; NeuroNav scans the
headers, builds every volume and writes the same uncompressed NIfTI files, so both do the same job.
The voxels of both outputs are compared after reorientation to RAS (must be identical).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, machine, pin_to_one_core, print_ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from neuronav.ingest import scan
    from neuronav.phantom import generate_study
    from neuronav.volume import save_nifti
    from neuronav.volume.dicom import volume_from_series

    dcm2niix = shutil.which("dcm2niix")
    if dcm2niix is None:
        print("dcm2niix is not installed (scripts/setup.sh installs it)", file=sys.stderr)
        return 2
    core = pin_to_one_core()
    work = Path(tempfile.mkdtemp(prefix="nn-bench-"))
    try:
        study = generate_study(work / "phantom", seed=args.seed, lesion="glioma", fmt="dicom", profile="clinical")
        dicom_dir = work / "phantom" / "dicom"
        n_files = sum(1 for p in dicom_dir.rglob("*") if p.is_file())

        ours_dir, peer_dir = work / "ours", work / "peer"

        def ours() -> list[Path]:
            shutil.rmtree(ours_dir, ignore_errors=True)
            inv = scan([dicom_dir])
            written = []
            for s in inv.all_series:
                vol = volume_from_series(s)
                written.append(save_nifti(vol, ours_dir / f"{s.metadata.series_number:03d}.nii"))
            return written

        def peer() -> None:
            shutil.rmtree(peer_dir, ignore_errors=True)
            peer_dir.mkdir()
            subprocess.run(
                [dcm2niix, "-z", "n", "-b", "n", "-f", "%s", "-o", str(peer_dir), str(dicom_dir)],
                check=True,
                capture_output=True,
            )

        ours()
        peer()  # warm the page cache for both
        t_peer, _ = best_of(peer, args.repeats)
        t_ours, _ = best_of(ours, args.repeats)

        # identical voxels, series by series
        identical = True
        for mine in sorted(ours_dir.glob("*.nii")):
            number = int(mine.stem)
            ref = sorted(peer_dir.glob(f"{number}*.nii"))
            if len(ref) != 1:
                identical = False
                print(f"  series {number}: dcm2niix wrote {len(ref)} files")
                continue
            a = nib.as_closest_canonical(nib.load(str(mine)))
            b = nib.as_closest_canonical(nib.load(str(ref[0])))
            same = a.shape == b.shape and np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
            aff = float(np.abs(a.affine - b.affine).max()) if a.shape == b.shape else float("nan")
            identical &= same and aff < 1e-3
            print(
                f"  series {number:3d}: shape {a.shape}, identical voxels: {same}, max affine difference {aff:.2e} mm"
            )

        print(f"\nmachine: {machine()}; pinned to core {core}")
        print(f"study: {len(study.series)} series, {n_files} files (phantom seed {args.seed}, profile clinical)")
        ratio = print_ratio(
            f"Ingest + volume build + write NIfTI (median of {args.repeats})",
            "NeuroNav scan + volume_from_series + save",
            t_ours,
            "dcm2niix -z n",
            t_peer,
            "target ≤ 1.5, goal 1.0",
        )
        print(f"  identical voxels and affines: {identical}")
        return 0 if identical and ratio <= 1.5 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
