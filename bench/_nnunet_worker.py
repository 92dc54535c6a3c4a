"""nnU-Net v2 side of bench/analysis_vs_nnunet.py. Runs with bench/.venv-nnunet/bin/python only.

  prepare --nifti DIR --model DIR --inputs DIR   (not timed by the benchmark)
      Writes a "trained model folder" as nnU-Net's training would leave it: plans.json with a
      3d_fullres configuration as nnU-Net plans BraTS-like 1 mm data, dataset.json for a 4-channel,
      4-class brain tumour task, and fold_0/checkpoint_final.pth holding randomly initialised weights
      of the network nnU-Net builds from those plans. Then writes the study's four sequences, on the
      T1c grid, as nnU-Net input files case_0000.nii … case_0003.nii (channels T1, T1c, T2, FLAIR).
  predict --model DIR --inputs DIR --out DIR --threads N   (timed by the benchmark)
      What `nnUNetv2_predict_from_modelfolder -f 0 --disable_tta -device cpu -npp 1 -nps 1` does:
      nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=cpu),
      initialize_from_trained_model_folder(use_folds=(0,)), predict_from_files → reading, cropping,
      ZScore normalisation, Gaussian-weighted sliding window over 128³ patches, export of the
      segmentation as NIfTI.

Both print one JSON line (prefixed "RESULT ") with what they did.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# nnU-Net reads these at import and warns when they are unset; nothing here uses them.
for _var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
    os.environ.setdefault(_var, "/tmp/nnunet-bench-unused")

SEQUENCES = ("T1", "T1c", "T2", "FLAIR")  # nnU-Net's BraTS channel order: T1, T1ce, T2, FLAIR
REFERENCE = "T1c"
LABELS = {"background": 0, "necrotic_core": 1, "oedema": 2, "enhancing": 3}

# nnU-Net v2's plans for BraTS 2021 (Dataset137, default ExperimentPlanner, 8 GB target): 3d_fullres at
# 1 × 1 × 1 mm, patch 128³, batch 2, median image size after cropping 140 × 171 × 137, ZScore
# normalisation inside the non-zero mask (BraTS cropping keeps < 3/4 of the voxels).
SPACING = (1.0, 1.0, 1.0)
PATCH_SIZE = (128, 128, 128)
MEDIAN_SHAPE = (140, 171, 137)
# What the issue states the 3d_fullres default architecture is; checked against nnU-Net's own
# topology code in plans_dict().
EXPECTED_STRIDES = [[1, 1, 1]] + [[2, 2, 2]] * 5
EXPECTED_FEATURES = (32, 64, 128, 256, 320, 320)


def result(payload: dict) -> None:
    print("RESULT " + json.dumps(payload), flush=True)


def plans_dict() -> dict:
    """A plans.json with one 3d_fullres configuration, built the way nnU-Net's ExperimentPlanner does."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    _, strides, kernels, patch, _ = get_pool_and_conv_props(list(SPACING), list(PATCH_SIZE), 4, 999999)
    strides = [list(map(int, s)) for s in strides]
    kernels = [list(map(int, k)) for k in kernels]
    n_stages = len(strides)
    features = tuple(min(320, 32 * 2**i) for i in range(n_stages))  # planner: base 32, max 320 in 3D
    if list(patch) != list(PATCH_SIZE) or strides != EXPECTED_STRIDES or features != EXPECTED_FEATURES:
        raise SystemExit(f"nnU-Net topology differs from the expected default: {patch} {strides} {features}")
    if any(k != [3, 3, 3] for k in kernels):
        raise SystemExit(f"unexpected conv kernels {kernels}")
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": list(features),
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": kernels,
            "strides": strides,
            "n_conv_per_stage": [2] * n_stages,
            "n_conv_per_stage_decoder": [2] * (n_stages - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    # The planner's memory check: 128³ must fit the 8 GB reference at batch size 2.
    estimate = ExperimentPlanner.static_estimate_VRAM_usage(
        PATCH_SIZE,
        len(SEQUENCES),
        len(LABELS),
        arch["network_class_name"],
        arch["arch_kwargs"],
        tuple(arch["_kw_requires_import"]),
    )
    if estimate > 560_000_000:  # ExperimentPlanner.UNet_reference_val_3d at 8 GB
        raise SystemExit(f"128³ would not fit nnU-Net's default memory target ({estimate})")
    fullres = {
        "data_identifier": "nnUNetPlans_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": list(PATCH_SIZE),
        "median_image_size_in_voxels": list(MEDIAN_SHAPE),
        "spacing": list(SPACING),
        "normalization_schemes": ["ZScoreNormalization"] * len(SEQUENCES),
        "use_mask_for_norm": [True] * len(SEQUENCES),
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": arch,
        "batch_dice": False,
    }
    intensity = {
        "max": 5000.0,
        "mean": 500.0,
        "median": 500.0,
        "min": 0.0,
        "percentile_00_5": 10.0,
        "percentile_99_5": 2000.0,
        "std": 200.0,
    }
    return {
        "dataset_name": "Dataset999_NeuroNavBench",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(SPACING),
        "original_median_shape_after_transp": list(MEDIAN_SHAPE),
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": fullres},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(i): intensity for i in range(len(SEQUENCES))},
    }


def write_model_folder(model: Path) -> int:
    """plans.json, dataset.json and fold_0/checkpoint_final.pth (random weights); returns the parameter count."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = plans_dict()
    dataset = {
        "channel_names": {str(i): name for i, name in enumerate(SEQUENCES)},
        "labels": LABELS,
        "numTraining": 1,
        "file_ending": ".nii",
    }
    (model / "fold_0").mkdir(parents=True, exist_ok=True)
    (model / "plans.json").write_text(json.dumps(plans, indent=1))
    (model / "dataset.json").write_text(json.dumps(dataset, indent=1))

    torch.manual_seed(0)
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    n_out = pm.get_label_manager(dataset).num_segmentation_heads
    net = nnUNetTrainer.build_network_architecture(pm, cm, len(SEQUENCES), n_out, enable_deep_supervision=False)
    checkpoint = {
        "network_weights": net.state_dict(),
        "trainer_name": "nnUNetTrainer",
        "init_args": {"configuration": "3d_fullres", "fold": 0},
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(checkpoint, model / "fold_0" / "checkpoint_final.pth")
    return sum(p.numel() for p in net.parameters())


def write_inputs(nifti: Path, inputs: Path) -> dict:
    """The four sequences on the T1c grid as case_000N.nii; resamples (trilinear) any on another grid."""
    import nibabel as nib
    import numpy as np
    from scipy.ndimage import affine_transform

    inputs.mkdir(parents=True, exist_ok=True)
    ref = nib.load(nifti / f"{REFERENCE}.nii.gz")
    resampled, t0 = [], time.perf_counter()
    for channel, name in enumerate(SEQUENCES):
        img = nib.load(nifti / f"{name}.nii.gz")
        data = np.asarray(img.dataobj)
        if img.shape != ref.shape or not np.allclose(img.affine, ref.affine, atol=1e-4):
            ref_to_src = np.linalg.inv(img.affine) @ ref.affine
            data = affine_transform(
                data.astype(np.float32), ref_to_src[:3, :3], ref_to_src[:3, 3], output_shape=ref.shape, order=1
            )
            resampled.append(name)
        out = nib.Nifti1Image(data, ref.affine, ref.header)
        out.set_data_dtype(data.dtype)
        nib.save(out, inputs / f"case_{channel:04d}.nii")
    return {"resampled": resampled, "resample_s": round(time.perf_counter() - t0, 2), "shape": list(ref.shape)}


def prepare(args: argparse.Namespace) -> None:
    n_params = write_model_folder(Path(args.model))
    info = write_inputs(Path(args.nifti), Path(args.inputs))
    result({"parameters": n_params, **info})


def predict(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(args.threads)
    t_import = time.perf_counter()
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=False,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(args.model, use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    t_init = time.perf_counter()
    predictor.predict_from_files(
        args.inputs,
        args.out,
        save_probabilities=False,
        overwrite=True,
        num_processes_preprocessing=1,
        num_processes_segmentation_export=1,
    )
    t_done = time.perf_counter()
    seg = Path(args.out) / "case.nii"
    if not seg.is_file():
        raise SystemExit(f"nnU-Net wrote no segmentation at {seg}")
    result(
        {
            "import_s": round(t_import - t0, 2),
            "init_s": round(t_init - t_import, 2),
            "predict_and_export_s": round(t_done - t_init, 2),
            "threads": torch.get_num_threads(),
            "segmentation": str(seg),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--nifti", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True)
    p.set_defaults(fn=prepare)
    q = sub.add_parser("predict")
    q.add_argument("--model", required=True)
    q.add_argument("--inputs", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--threads", type=int, default=2)
    q.set_defaults(fn=predict)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
