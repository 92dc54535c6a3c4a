"""MONAI bundles: a TorchScript network and its metadata, converted to an ONNX model and card defaults.

A bundle is a folder or zip with ``models/model.ts`` (TorchScript) and ``configs/metadata.json``.
:func:`convert_bundle` reads it (bounded sizes, no path traversal), derives the card's defaults from
the metadata (name, version, input channels as NeuroNav sequences, labels), appends an output
transform so that the ONNX model outputs probabilities, exports it with ``torch.onnx`` and checks
that ONNX Runtime reproduces the TorchScript output before anything is registered. The conversion
is recorded in the card's ``source``.

Only this step needs torch (the ``train`` extra), imported when a bundle is converted: importing
this module never imports torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from neuronav.analysis.models.cards import BRATS_LABELS, MODEL_FILE, SEQUENCES
from neuronav.analysis.models.errors import ModelRegistrationError

OutputTransform = Literal["none", "softmax", "brats_regions"]

_MAX_METADATA_BYTES = 4 * 1024 * 1024
_MAX_TORCHSCRIPT_BYTES = 4 * 1024**3


_SEQUENCE_ALIASES = {
    "t1": "T1",
    "t1w": "T1",
    "t1n": "T1",
    "t1c": "T1c",
    "t1ce": "T1c",
    "t1gd": "T1c",
    "t1-gd": "T1c",
    "t1wce": "T1c",
    "t1post": "T1c",
    "t2": "T2",
    "t2w": "T2",
    "flair": "FLAIR",
    "t2flair": "FLAIR",
    "t2-flair": "FLAIR",
    "t2f": "FLAIR",
}


def _read_bundle(path: Path) -> tuple[dict[str, Any], bytes, str]:
    """(metadata, TorchScript bytes, description of the source) of a bundle folder or zip."""
    if path.is_dir():
        roots = [path, *sorted(p for p in path.iterdir() if p.is_dir())]
        for root in roots:
            meta_p, ts_p = root / "configs" / "metadata.json", root / "models" / "model.ts"
            if meta_p.is_file() and ts_p.is_file():
                if meta_p.stat().st_size > _MAX_METADATA_BYTES:
                    raise ModelRegistrationError(f"{meta_p}: metadata.json is implausibly large")
                return _parse_metadata(meta_p.read_bytes(), str(meta_p)), ts_p.read_bytes(), str(path)
        raise ModelRegistrationError(f"{path}: not a MONAI bundle (needs configs/metadata.json and models/model.ts)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
            for meta_name, info in infos.items():
                if not meta_name.endswith("configs/metadata.json"):
                    continue
                prefix = meta_name[: -len("configs/metadata.json")]
                if prefix.count("/") > 1 or ".." in prefix or prefix.startswith("/"):
                    continue
                ts_info = infos.get(prefix + "models/model.ts")
                if ts_info is None:
                    continue
                if info.file_size > _MAX_METADATA_BYTES or ts_info.file_size > _MAX_TORCHSCRIPT_BYTES:
                    raise ModelRegistrationError(f"{path}: bundle members are implausibly large")
                meta = _parse_metadata(zf.read(info), f"{path}:{meta_name}")
                return meta, zf.read(ts_info), str(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelRegistrationError(f"{path}: cannot read the bundle zip: {exc}") from None
    raise ModelRegistrationError(f"{path}: not a MONAI bundle (needs configs/metadata.json and models/model.ts)")


def _parse_metadata(raw: bytes, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelRegistrationError(f"{where}: invalid metadata.json: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelRegistrationError(f"{where}: metadata.json must be a JSON object")
    return meta


def _first_format(meta: Mapping[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    fmt = meta.get("network_data_format", {}).get(kind, {})
    if not isinstance(fmt, dict) or not fmt:
        return ("image" if kind == "inputs" else "pred"), {}
    name, spec = next(iter(fmt.items()))
    return str(name), spec if isinstance(spec, dict) else {}


def _channel_def(spec: Mapping[str, Any]) -> list[str] | None:
    cdef = spec.get("channel_def")
    if not isinstance(cdef, dict) or not cdef:
        return None
    try:
        return [str(cdef[k]) for k in sorted(cdef, key=lambda k: int(k))]
    except (ValueError, TypeError):
        return None


def _bundle_defaults(
    meta: Mapping[str, Any], user: Mapping[str, Any], transform: OutputTransform | None, source: str
) -> tuple[dict[str, Any], OutputTransform, tuple[int, ...]]:
    """Card defaults from the bundle's metadata, the output transform and the export input shape."""
    _, in_spec = _first_format(meta, "inputs")
    _, out_spec = _first_format(meta, "outputs")
    in_channels = _channel_def(in_spec)
    out_channels = _channel_def(out_spec)
    n_in = int(in_spec.get("num_channels") or (len(in_channels) if in_channels else len(SEQUENCES)))
    if transform is None:
        text = " ".join(out_channels or []).lower()
        regions = len(out_channels or []) == 3 and "whole" in text and "core" in text and "enhanc" in text
        transform = "brats_regions" if regions else "softmax"
    if transform == "brats_regions":
        labels = dict(BRATS_LABELS)
    elif out_channels:
        labels = {str(i): c for i, c in enumerate(out_channels)}
    else:
        labels = dict(user.get("labels") or BRATS_LABELS)
    seqs: list[str] | None = None
    if in_channels:
        mapped = [_SEQUENCE_ALIASES.get(re.sub(r"[\s_]", "", c.lower())) for c in in_channels]
        if all(mapped) and len(set(mapped)) == len(mapped):
            seqs = [m for m in mapped if m is not None]
    if "inputs" in user:
        first = user["inputs"][0] if isinstance(user["inputs"], list) and user["inputs"] else {}
        declared = first.get("shape", []) if isinstance(first, dict) else []
        if not declared or not all(isinstance(d, int) for d in declared):
            raise ModelRegistrationError(f"{source}: a bundle's card must give the input shape as integers")
        shape = tuple(int(d) for d in declared)
    else:
        from neuronav.analysis.grid import WORKING_GRID

        shape = (1, n_in, *WORKING_GRID.shape)
    raw_name = str(meta.get("name") or Path(source).stem)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", raw_name).strip("-.").lower()[:100] or "bundle"
    defaults: dict[str, Any] = {
        "name": name,
        "version": str(meta.get("version") or "0.0.0"),
        "task": "segmentation",
        "labels": labels,
        "inputs": [
            {
                "name": "image",
                "shape": list(shape),
                "dtype": "float32",
                "description": str(in_spec.get("modality", "")),
                **({"channels": seqs} if seqs else {}),
            }
        ],
        "outputs": [
            {
                "name": "probabilities",
                "shape": [shape[0], len(labels), *shape[2:]],
                "dtype": "float32",
                "description": f"class probabilities (output transform: {transform})",
            }
        ],
        "intended_use": str(meta.get("intended_use") or meta.get("description") or ""),
        "licence": str(meta.get("license") or meta.get("copyright") or "see the bundle"),
        "metrics": {"reported_by_bundle": meta["performance"]} if isinstance(meta.get("performance"), dict) else {},
    }
    return defaults, transform, shape


def convert_bundle(
    path: Path, user: dict[str, Any], tmp: Path, transform: OutputTransform | None
) -> tuple[Path, dict[str, Any]]:
    """The bundle at ``path`` as ``tmp/model.onnx`` and the card data (``user``'s fields over the
    bundle's defaults, with ``source`` recording the conversion)."""
    try:
        import torch
    except ImportError:
        raise ModelRegistrationError(
            f"{path}: registering a MONAI bundle (TorchScript) needs torch; install the train extra: "
            "pip install 'neuronav[train]'"
        ) from None
    with warnings.catch_warnings():
        # torch deprecates TorchScript and its ONNX exporter; MONAI bundles ship TorchScript, so both are needed
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="no signature found", category=UserWarning)
        return _convert_torchscript(torch, path, user, tmp, transform)


def _convert_torchscript(
    torch: Any, path: Path, user: dict[str, Any], tmp: Path, transform: OutputTransform | None
) -> tuple[Path, dict[str, Any]]:
    meta, ts_bytes, source = _read_bundle(path)
    defaults, transform, shape = _bundle_defaults(meta, user, transform, source)
    data = {**defaults, **user}
    for key in ("inputs", "outputs"):  # the user's first tensor spec refines the bundle's, field by field
        given = user.get(key)
        if isinstance(given, list) and given and isinstance(given[0], dict):
            data[key] = [{**defaults[key][0], **given[0]}, *given[1:]]
    try:
        net = torch.jit.load(io.BytesIO(ts_bytes), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError and friends
        raise ModelRegistrationError(f"{path}: models/model.ts is not loadable TorchScript: {exc}") from None
    net.eval()
    _, out_spec = _first_format(meta, "outputs")
    head = _make_head(net, transform, _region_order(_channel_def(out_spec)))
    onnx_path = tmp / MODEL_FILE
    dummy = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    opset = 17
    try:
        with torch.no_grad():
            expected = head(dummy).numpy()
            # the exporter will not trace into a loaded ScriptModule held by a plain Module; a traced
            # wrapper it accepts
            traced = torch.jit.trace(head, (dummy,), check_trace=False)
            torch.onnx.export(
                traced,
                (dummy,),
                str(onnx_path),
                input_names=[data["inputs"][0]["name"]],
                output_names=[data["outputs"][0]["name"]],
                opset_version=opset,
                dynamo=False,
            )
    except Exception as exc:  # export errors come in many types
        raise ModelRegistrationError(f"{path}: the TorchScript model could not be exported to ONNX: {exc}") from None
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: dummy.numpy()})[0]
    diff = float(np.max(np.abs(np.asarray(got) - expected))) if expected.size else 0.0
    if not np.isfinite(diff) or diff > 1e-3:
        raise ModelRegistrationError(
            f"{path}: the ONNX conversion differs from the TorchScript model (max |Δ| = {diff:.3g}); not registered"
        )
    data["source"] = {
        "kind": "monai_bundle",
        "bundle": Path(source).name,
        "bundle_name": meta.get("name"),
        "bundle_version": meta.get("version"),
        "bundle_description": meta.get("description"),
        "monai_version": meta.get("monai_version"),
        "torchscript_sha256": hashlib.sha256(ts_bytes).hexdigest(),
        "conversion": {
            "tool": "torch.onnx.export (TorchScript exporter, dynamo=False)",
            "torch_version": str(torch.__version__),
            "opset": opset,
            "input_shape": list(shape),
            "output_transform": transform,
            "max_abs_difference_vs_torchscript": diff,
        },
        **({"user_source": user["source"]} if isinstance(user.get("source"), dict) else {}),
    }
    return onnx_path, data


def _region_order(channels: Sequence[str] | None) -> tuple[int, int, int]:
    """Indices of (tumour core, whole tumour, enhancing) among a region model's output channels."""
    if not channels or len(channels) != 3:
        return (0, 1, 2)  # MONAI BraTS bundle order
    low = [c.lower() for c in channels]

    def index(word: str) -> int:
        hits = [i for i, c in enumerate(low) if word in c]
        return hits[0] if len(hits) == 1 else -1

    order = (index("core"), index("whole"), index("enhanc"))
    return order if sorted(order) == [0, 1, 2] else (0, 1, 2)


def _make_head(net: Any, transform: str, order: tuple[int, int, int]) -> Any:
    """The bundle's network followed by the output transform, so that the ONNX model outputs probabilities."""
    import torch

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            y = self.net(x)
            if isinstance(y, list | tuple):
                y = y[0]
            if transform == "softmax":
                return torch.softmax(y, dim=1)
            if transform == "brats_regions":
                # sigmoid region channels; nest them (ET ⊂ TC ⊂ WT) and turn the regions into the
                # probabilities of the BraTS labels, which then sum to 1
                s = torch.sigmoid(y)
                i_tc, i_wt, i_et = order
                wt = s[:, i_wt : i_wt + 1]
                tc = torch.minimum(s[:, i_tc : i_tc + 1], wt)
                et = torch.minimum(s[:, i_et : i_et + 1], tc)
                return torch.cat([1.0 - wt, tc - et, wt - tc, et], dim=1)
            return y

    return Head()
