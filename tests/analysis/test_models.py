"""Models: cards, checksums at load, listing, resolving ensembles, registering ONNX and MONAI bundles.

Models are tiny networks built here (a 1×1×1 convolution + softmax as an ONNX graph, or a small
TorchScript net packed as a MONAI bundle); nothing is downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from neuronav.analysis import models as models_pkg
from neuronav.analysis.models import (
    BRATS_LABELS,
    ModelCard,
    ModelCardError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelRegistrationError,
    file_sha256,
    list_models,
    load_model,
    model_rows,
    parse_card,
    read_card,
    register_model,
    resolve,
    write_card,
)
from neuronav.errors import ConfigError, NeuroNavError

FREE = [1, 4, "x", "y", "z"]


def build_seg_onnx(
    path: Path,
    weight: np.ndarray | None = None,
    bias: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    shape: Sequence[int | str] = (1, 4, "x", "y", "z"),
    softmax: bool = True,
) -> Path:
    """ONNX 'image' (1, 4, X, Y, Z) → 'probabilities' (1, 4, X, Y, Z): a 1×1×1 convolution, then softmax."""
    w = np.zeros((4, 4), np.float32) if weight is None else np.asarray(weight, np.float32)
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[1, 1, 1])]
    nodes.append(
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)
        if softmax
        else helper.make_node("Identity", ["logits"], ["probabilities"])
    )
    out_shape = [shape[0], 4, *shape[2:]]
    graph = helper.make_graph(
        nodes,
        "tiny_seg",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, out_shape)],
        initializer=[
            numpy_helper.from_array(w.reshape(4, 4, 1, 1, 1), "W"),
            numpy_helper.from_array(np.asarray(bias, np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def card_dict(name: str = "tiny", version: str = "1.0", **over: Any) -> dict[str, Any]:
    """A complete card for :func:`build_seg_onnx` models (sha256 left to the caller / registration)."""
    shape = over.pop("shape", FREE)
    data: dict[str, Any] = {
        "name": name,
        "version": version,
        "task": "segmentation",
        "inputs": [{"name": "image", "shape": shape, "dtype": "float32", "description": "z-scored channels"}],
        "outputs": [
            {"name": "probabilities", "shape": [shape[0], 4, *shape[2:]], "dtype": "float32", "description": "softmax"}
        ],
        "labels": dict(BRATS_LABELS),
        "input_space": models_pkg.WORKING_GRID_SPACE,
        "training": {"data": "none: a test network", "seeds": [0], "steps": 0, "command": "pytest"},
        "metrics": {"unseen_phantoms": {"dice_whole_tumour": 0.5}},
        "intended_use": "tests",
        "limitations": "a test network",
        "clinical_use": "Research only, not for clinical use.",
        "licence": "Apache-2.0",
        "created": "2025-01-01",
    }
    data.update(over)
    return data


def ship(base: Path, name: str, version: str = "1.0", bias: Sequence[float] = (0, 0, 0, 0), **card: Any) -> ModelCard:
    """Put a tiny model with its card into a models folder, the shipped layout."""
    folder = base / name / version
    onnx_path = build_seg_onnx(folder / "model.onnx", bias=bias)
    parsed = parse_card(card_dict(name, version, sha256=file_sha256(onnx_path), **card))
    write_card(folder, parsed)
    return parsed


@pytest.fixture(autouse=True)
def model_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    shipped.mkdir()
    monkeypatch.setenv("NEURONAV_MODELS_DIR", str(shipped))
    monkeypatch.setenv("NEURONAV_USER_MODELS_DIR", str(user))
    monkeypatch.setenv("NEURONAV_THREADS", "1")
    models_pkg.clear_cache()
    yield shipped, user
    models_pkg.clear_cache()


# ----------------------------------------------------------------------------------------- cards


def test_card_round_trip_and_markdown(tmp_path: Path) -> None:
    card = parse_card(card_dict(sha256="a" * 64, ensemble="seg"))
    write_card(tmp_path, card)
    assert read_card(tmp_path / "card.json") == card
    md = (tmp_path / "card.md").read_text()
    assert "not for clinical use" in md
    assert "a" * 64 in md
    assert "necrotic core" in md and "dice_whole_tumour" in md


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"clinical_use": "Validated for diagnosis."}, "not for clinical use"),
        ({"clinical_use": ""}, "not for clinical use"),
        ({"surprise": 1}, "surprise"),
        ({"sha256": "XYZ"}, "sha256"),
        ({"name": "../etc"}, "name"),
        ({"labels": {"0": "background", "2": "oedema"}}, "labels"),
        ({"task": "prophecy"}, "task"),
        ({"framework": "pytorch"}, "framework"),
    ],
)
def test_bad_cards_are_refused_with_the_reason(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ModelCardError, match=problem):
        parse_card({**card_dict(sha256="a" * 64), **change})


def test_card_input_channels_must_be_sequences() -> None:
    inputs = [{"name": "image", "shape": FREE, "channels": ["T1", "T1", "T2", "PD"]}]
    with pytest.raises(ModelCardError, match="channels"):
        parse_card(card_dict(sha256="a" * 64, inputs=inputs))


# ------------------------------------------------------------------------------- listing, loading


def test_list_and_rows_show_shipped_user_and_broken_cards(model_dirs: tuple[Path, Path]) -> None:
    shipped, user = model_dirs
    ship(shipped, "alpha", metrics={"unseen_phantoms": {"dice_whole_tumour": 0.8123}})
    ship(user, "beta", "2.0")
    (shipped / "broken" / "0.1").mkdir(parents=True)
    (shipped / "broken" / "0.1" / "card.json").write_text('{"name": "broken"}')

    models = list_models()
    assert [(m.card.name, m.where) for m in models] == [("alpha", "shipped"), ("beta", "user")]
    assert models[0].path == shipped / "alpha" / "1.0"

    rows = {r["name"]: r for r in model_rows(verify=True)}
    assert rows["alpha"]["status"] == "ok"
    assert rows["alpha"]["sha256"] == models[0].card.sha256[:12]
    assert "dice_whole_tumour=0.812" in rows["alpha"]["metrics"]
    assert rows["beta"]["where"] == "user"
    assert rows["broken"]["status"].startswith("invalid card")
    assert "clinical_use" in rows["broken"]["status"]


def test_load_runs_the_network_and_records_provenance(model_dirs: tuple[Path, Path]) -> None:
    card = ship(model_dirs[0], "alpha", bias=(0, 1, 2, 3))
    model = load_model("alpha")
    out = model.run({"image": np.zeros((1, 4, 3, 4, 5), np.float64)})
    p = out["probabilities"]
    assert p.shape == (1, 4, 3, 4, 5)
    e = np.exp([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(p[0, :, 1, 2, 3], e / e.sum(), rtol=1e-5)
    pb = model.produced_by()
    assert (pb.name, pb.version, pb.kind, pb.sha256) == ("alpha", "1.0", "model", card.sha256)
    assert load_model("alpha", "1.0") is model  # cached per process


def test_load_refuses_a_tampered_file(model_dirs: tuple[Path, Path]) -> None:
    card = ship(model_dirs[0], "alpha")
    f = model_dirs[0] / "alpha" / "1.0" / "model.onnx"
    with f.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelIntegrityError) as exc:
        load_model("alpha")
    msg = str(exc.value)
    assert str(f) in msg and card.sha256 in msg and file_sha256(f) in msg
    assert isinstance(exc.value, NeuroNavError)


def test_a_file_changed_after_loading_is_checked_again(model_dirs: tuple[Path, Path]) -> None:
    ship(model_dirs[0], "alpha")
    load_model("alpha")
    f = model_dirs[0] / "alpha" / "1.0" / "model.onnx"
    build_seg_onnx(f, bias=(5, 0, 0, 0))
    with pytest.raises(ModelIntegrityError):
        load_model("alpha")


def test_run_checks_input_names_and_shapes(model_dirs: tuple[Path, Path]) -> None:
    folder = model_dirs[0] / "fixed" / "1.0"
    f = build_seg_onnx(folder / "model.onnx", shape=(1, 4, 4, 4, 4))
    write_card(folder, parse_card(card_dict("fixed", shape=[1, 4, 4, 4, 4], sha256=file_sha256(f))))
    model = load_model("fixed")
    with pytest.raises(models_pkg.ModelError, match="missing"):
        model.run({"img": np.zeros((1, 4, 4, 4, 4), np.float32)})
    with pytest.raises(models_pkg.ModelError, match="shape"):
        model.run({"image": np.zeros((1, 4, 5, 4, 4), np.float32)})


def test_threads_setting_is_validated(model_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    ship(model_dirs[0], "alpha")
    monkeypatch.setenv("NEURONAV_THREADS", "many")
    with pytest.raises(ConfigError, match="NEURONAV_THREADS"):
        load_model("alpha")


def test_providers_auto_takes_an_offered_accelerator_else_the_cpu() -> None:
    from neuronav.analysis.models.runtime import providers

    cpu = "CPUExecutionProvider"
    assert providers("auto", [cpu]) == [cpu]
    assert providers("auto", ["TensorrtExecutionProvider", "CUDAExecutionProvider", cpu]) == [
        "CUDAExecutionProvider",
        cpu,
    ]
    assert providers("", ["ROCMExecutionProvider", cpu]) == ["ROCMExecutionProvider", cpu]
    assert providers("cpu", ["CUDAExecutionProvider", cpu]) == [cpu]
    assert providers("CUDAExecutionProvider", ["CUDAExecutionProvider", cpu]) == ["CUDAExecutionProvider", cpu]
    with pytest.raises(models_pkg.ModelError, match="does not offer"):
        providers("CUDAExecutionProvider", [cpu])


def test_the_provider_used_is_in_the_provenance(model_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    ship(model_dirs[0], "alpha")
    monkeypatch.setenv("NEURONAV_ORT_PROVIDERS", "auto")
    model = load_model("alpha")
    expected = (
        "CUDAExecutionProvider" if "CUDAExecutionProvider" in ort.get_available_providers() else "CPUExecutionProvider"
    )
    assert model.produced_by().execution_provider == expected == model.session.get_providers()[0]
    monkeypatch.setenv("NEURONAV_ORT_PROVIDERS", "cpu")
    on_cpu = load_model("alpha")
    assert on_cpu.produced_by().execution_provider == "CPUExecutionProvider"
    monkeypatch.setenv("NEURONAV_ORT_PROVIDERS", "NoSuchExecutionProvider")
    with pytest.raises(models_pkg.ModelError, match="NoSuchExecutionProvider"):
        load_model("alpha")


# ---------------------------------------------------------------------------------------- resolve


def test_default_segmentation_is_the_newest_shipped_ensemble(model_dirs: tuple[Path, Path]) -> None:
    shipped, user = model_dirs
    for v in ("0.9", "0.10"):  # 0.10 is newer than 0.9
        ship(shipped, "seg-a", v, ensemble="seg")
        ship(shipped, "seg-b", v, ensemble="seg")
    ship(shipped, "lonely", "5.0")
    ship(user, "site-a", "9.0", ensemble="site")  # user models are never the default
    got = resolve(None, "segmentation")
    assert [(m.card.name, m.card.version) for m in got] == [("seg-a", "0.10"), ("seg-b", "0.10")]


def test_default_without_ensemble_is_the_newest_model(model_dirs: tuple[Path, Path]) -> None:
    ship(model_dirs[0], "solo", "1.2")
    ship(model_dirs[0], "solo", "1.10")
    assert [m.card.version for m in resolve(None, "segmentation")] == ["1.10"]
    with pytest.raises(ModelNotFoundError, match="no shipped detection model"):
        resolve(None, "detection")


def test_resolve_by_name_version_and_ensemble(model_dirs: tuple[Path, Path]) -> None:
    shipped, user = model_dirs
    ship(shipped, "seg-a", "1.0", ensemble="seg")
    ship(shipped, "seg-b", "1.0", ensemble="seg")
    ship(shipped, "seg-a", "2.0")
    ship(user, "site", "3.1")
    assert [m.card.spec for m in resolve("seg-a", "segmentation")] == ["seg-a@2.0"]
    assert [m.card.spec for m in resolve("seg-a@1.0", "segmentation")] == ["seg-a@1.0"]
    assert [m.card.spec for m in resolve("seg", "segmentation")] == ["seg-a@1.0", "seg-b@1.0"]
    assert [m.card.spec for m in resolve("seg@1.0", "segmentation")] == ["seg-a@1.0", "seg-b@1.0"]
    assert [m.where for m in resolve("site", "segmentation")] == ["user"]


def test_unknown_model_lists_what_is_available(model_dirs: tuple[Path, Path]) -> None:
    ship(model_dirs[0], "seg-a", "1.0", ensemble="seg")
    with pytest.raises(ModelNotFoundError) as exc:
        resolve("segnet@7", "segmentation")
    assert "segnet@7" in str(exc.value) and "seg-a@1.0" in str(exc.value) and "seg@1.0" in str(exc.value)
    with pytest.raises(ModelNotFoundError, match="not a detection model"):
        resolve("seg-a", "detection")
    with pytest.raises(ModelNotFoundError, match="NAME@VERSION"):
        resolve("seg-a@", "segmentation")


# ------------------------------------------------------------------------------ registering ONNX


def test_register_onnx_copies_file_and_card(tmp_path: Path, model_dirs: tuple[Path, Path]) -> None:
    src = build_seg_onnx(tmp_path / "mine.onnx", bias=(0, 0, 1, 0))
    card = register_model(src, card_dict("mine", "0.3"))
    folder = model_dirs[1] / "mine" / "0.3"
    assert card.sha256 == file_sha256(src) == file_sha256(folder / "model.onnx")
    assert read_card(folder / "card.json") == card
    assert (folder / "card.md").is_file()
    assert [p.name for p in (model_dirs[1] / "mine").iterdir()] == ["0.3"]  # no staging left behind
    out = load_model("mine").run({"image": np.zeros((1, 4, 2, 2, 2), np.float32)})
    assert out["probabilities"][0, :, 0, 0, 0].argmax() == 2


def test_register_from_card_file_into_explicit_dir(tmp_path: Path) -> None:
    src = build_seg_onnx(tmp_path / "mine.onnx")
    (tmp_path / "card.json").write_text(json.dumps(card_dict("mine", "1")))
    register_model(src, tmp_path / "card.json", user_dir=tmp_path / "site")
    assert (tmp_path / "site" / "mine" / "1" / "model.onnx").is_file()


def test_register_refuses_card_without_disclaimer(tmp_path: Path, model_dirs: tuple[Path, Path]) -> None:
    src = build_seg_onnx(tmp_path / "mine.onnx")
    data = card_dict("mine")
    del data["clinical_use"]
    with pytest.raises(ModelCardError, match="not for clinical use"):
        register_model(src, data)
    assert not (model_dirs[1] / "mine").exists()


def test_register_refuses_shapes_that_do_not_match(tmp_path: Path) -> None:
    src = build_seg_onnx(tmp_path / "mine.onnx", shape=(1, 4, 8, 8, 8))
    with pytest.raises(ModelRegistrationError, match="shape"):
        register_model(src, card_dict("mine", shape=[1, 4, 8, 8, 9]))
    with pytest.raises(ModelRegistrationError, match="shape"):
        register_model(src, card_dict("mine", shape=[1, 4, "x", "y", "z"]))  # claims freedom it lacks
    data = card_dict("mine", shape=[1, 4, 8, 8, 8])
    data["outputs"][0]["name"] = "logits"
    with pytest.raises(ModelRegistrationError, match="outputs"):
        register_model(src, data)


def test_register_refuses_wrong_checksum_duplicates_and_shipped_names(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    src = build_seg_onnx(tmp_path / "mine.onnx")
    with pytest.raises(ModelIntegrityError):
        register_model(src, card_dict("mine", sha256="0" * 64))
    register_model(src, card_dict("mine"))
    with pytest.raises(ModelRegistrationError, match="already registered"):
        register_model(src, card_dict("mine"))
    other = build_seg_onnx(tmp_path / "other.onnx", bias=(1, 0, 0, 0))
    assert register_model(other, card_dict("mine"), overwrite=True).sha256 == file_sha256(other)
    ship(model_dirs[0], "official")
    with pytest.raises(ModelRegistrationError, match="shipped"):
        register_model(src, card_dict("official"))


def test_register_refuses_a_file_onnxruntime_cannot_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a network")
    with pytest.raises(ModelRegistrationError, match="ONNX Runtime cannot load"):
        register_model(bad, card_dict("bad"))


def test_importing_the_engine_does_not_import_torch() -> None:
    code = "import sys, neuronav.analysis.models, neuronav.analysis.inference; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------------- MONAI bundles


def _bundle(tmp_path: Path, out_channels: int, channel_def_out: dict[str, str], as_zip: bool = False) -> Path:
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv3d(4, 6, 3, padding=1)
            self.b = torch.nn.Conv3d(6, out_channels, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    root = tmp_path / "tiny_bundle"
    (root / "models").mkdir(parents=True)
    (root / "configs").mkdir()
    torch.jit.save(torch.jit.script(Tiny().eval()), str(root / "models" / "model.ts"))
    meta = {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "name": "Tiny BraTS bundle",
        "version": "0.4.2",
        "monai_version": "1.3.0",
        "description": "a tiny test network",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "num_channels": 4,
                    "spatial_shape": [16, 16, 16],
                    "dtype": "float32",
                    "channel_def": {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"},
                }
            },
            "outputs": {
                "pred": {"type": "image", "num_channels": out_channels, "channel_def": channel_def_out},
            },
        },
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    if not as_zip:
        return root
    zpath = tmp_path / "tiny_bundle.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in root.rglob("*"):
            if f.is_file():
                zf.write(f, f"tiny_bundle/{f.relative_to(root)}")
    return zpath


def _user_card(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "input_space": "BraTS-like 1 mm, test",
        "limitations": "test only",
        "clinical_use": "not for clinical use",
        "inputs": [{"name": "image", "shape": [1, 4, 8, 8, 8]}],
    }
    data.update(over)
    return data


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script/save, used to build the bundle
@pytest.mark.parametrize("as_zip", [False, True])
def test_register_monai_bundle_converts_to_onnx(tmp_path: Path, model_dirs: tuple[Path, Path], as_zip: bool) -> None:
    import torch

    bundle = _bundle(tmp_path, 4, {"0": "background", "1": "necrotic core", "2": "oedema", "3": "enhancing"}, as_zip)
    card = register_model(bundle, _user_card())
    assert (card.name, card.version, card.task) == ("tiny-brats-bundle", "0.4.2", "segmentation")
    assert card.inputs[0].channels == ["FLAIR", "T1", "T1c", "T2"]
    assert card.source is not None and card.source["kind"] == "monai_bundle"
    assert card.source["conversion"]["output_transform"] == "softmax"
    assert card.source["conversion"]["max_abs_difference_vs_torchscript"] < 1e-4

    x = np.random.default_rng(1).standard_normal((1, 4, 8, 8, 8)).astype(np.float32)
    got = load_model(card.name).run({"image": x})["probabilities"]
    ts = tmp_path / "tiny_bundle" / "models" / "model.ts"
    expected = torch.softmax(torch.jit.load(str(ts))(torch.from_numpy(x)), dim=1).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_register_monai_brats_region_bundle_gives_label_probabilities(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    bundle = _bundle(tmp_path, 3, {"0": "Tumor core", "1": "Whole tumor", "2": "Enhancing tumor"})
    card = register_model(bundle, _user_card(name="regions"))
    assert card.labels == BRATS_LABELS
    assert card.source is not None and card.source["conversion"]["output_transform"] == "brats_regions"
    x = 3 * np.random.default_rng(2).standard_normal((1, 4, 8, 8, 8)).astype(np.float32)
    p = load_model("regions").run({"image": x})["probabilities"]
    assert p.shape == (1, 4, 8, 8, 8)
    assert p.min() >= -1e-6
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_register_bundle_without_torch_says_install_train_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "b"
    (bundle / "configs").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch → ImportError
    with pytest.raises(ModelRegistrationError, match="install the train extra"):
        register_model(bundle, _user_card())


def test_register_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ModelRegistrationError, match="not a MONAI bundle"):
        register_model(tmp_path / "nothing", _user_card())
