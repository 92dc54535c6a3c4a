"""The runtime: verified ONNX Runtime sessions of catalogued models, and running them.

Every load verifies the sha256 of the file against its card before ONNX Runtime sees it
(:class:`ModelIntegrityError` otherwise) and checks that the network's inputs and outputs are the
ones its card declares. Sessions run where ``NEURONAV_ORT_PROVIDERS`` says (:func:`providers`:
``auto``, the default, takes an accelerator ONNX Runtime offers — CUDA, ROCm, CoreML, DirectML — with
the CPU behind it, else the CPU alone; ``cpu``; or an explicit list), with ``NEURONAV_THREADS``
intra-op threads (default: every core); the provider a session got is recorded in each result's
provenance (:meth:`LoadedModel.produced_by`). Sessions are cached per process, keyed by the
file's path, size, mtime and checksum, so a replaced file is verified again. :func:`resolve`
gives the loaded models of a task (:func:`neuronav.analysis.models.catalogue.select_models` says
which).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from neuronav.analysis.models.cards import CARD_JSON, ModelCard, file_sha256
from neuronav.analysis.models.catalogue import RegisteredModel, Where, find_model, list_models, select_models
from neuronav.analysis.models.errors import ModelCardError, ModelError, ModelIntegrityError
from neuronav.config import read_settings
from neuronav.findings import ProducedBy

log = logging.getLogger(__name__)


def _session_options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = read_settings().threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


CPU = "CPUExecutionProvider"
# accelerators ``auto`` takes, in order of preference (TensorRT is left out: it compiles engines for
# minutes on first use)
ACCELERATORS = ("CUDAExecutionProvider", "ROCMExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider")


def providers(setting: str | None = None, available: Sequence[str] | None = None) -> list[str]:
    """The ONNX Runtime providers to ask for, from ``NEURONAV_ORT_PROVIDERS`` (or ``setting``).

    ``auto``: the first accelerator of :data:`ACCELERATORS` that ONNX Runtime offers
    (``ort.get_available_providers()``), then the CPU; ``cpu``: the CPU only; else a comma-separated
    list of provider names, each one ONNX Runtime must offer (:class:`ModelError` naming the missing
    ones otherwise), the CPU appended as the fallback.
    """
    value = (read_settings().ort_providers if setting is None else setting).strip()
    offered = list(ort.get_available_providers() if available is None else available)
    if value.lower() in ("", "auto"):
        return [*[p for p in ACCELERATORS if p in offered][:1], CPU]
    if value.lower() == "cpu":
        return [CPU]
    wanted = [p.strip() for p in value.split(",") if p.strip()]
    missing = [p for p in wanted if p not in offered]
    if missing:
        raise ModelError(
            f"NEURONAV_ORT_PROVIDERS names {', '.join(missing)}, which this ONNX Runtime does not offer "
            f"(it offers {', '.join(offered)}); use auto, cpu or some of those"
        )
    return wanted + ([] if CPU in wanted else [CPU])


def _ort_dtype(ort_type: str) -> str:
    inner = ort_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(inner, inner)


_NP_DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "int64": np.int64,
    "int32": np.int32,
    "uint8": np.uint8,
    "bool": np.bool_,
}


@dataclass(eq=False)
class LoadedModel:
    """A verified model with its ONNX Runtime session."""

    card: ModelCard
    session: ort.InferenceSession
    where: Where
    path: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def provider(self) -> str:
        """The provider ONNX Runtime runs this session on (the first it accepted)."""
        return str(self.session.get_providers()[0])

    def produced_by(self) -> ProducedBy:
        return ProducedBy(
            name=self.card.name,
            version=self.card.version,
            kind="model",
            sha256=self.card.sha256,
            execution_provider=self.provider,
        )

    def run(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        """Run the network; inputs by name (cast to the card's dtype), outputs by name."""
        expected = [i.name for i in self.session.get_inputs()]
        missing = [n for n in expected if n not in inputs]
        extra = [n for n in inputs if n not in expected]
        if missing or extra:
            raise ModelError(
                f"{self.card.spec}: inputs must be {expected}; "
                f"missing {missing or 'none'}, unexpected {extra or 'none'}"
            )
        feed: dict[str, npt.NDArray[Any]] = {}
        for spec in self.session.get_inputs():
            arr = np.asarray(inputs[spec.name])
            dtype = _NP_DTYPES.get(_ort_dtype(spec.type))
            if dtype is not None and arr.dtype != dtype:
                arr = arr.astype(dtype)
            if not _shape_fits(arr.shape, spec.shape):
                raise ModelError(f"{self.card.spec}: input {spec.name!r} has shape {arr.shape}, expected {spec.shape}")
            feed[spec.name] = np.ascontiguousarray(arr)
        names = [o.name for o in self.session.get_outputs()]
        with self._lock:
            try:
                results = self.session.run(names, feed)
            except Exception as exc:  # onnxruntime raises its own untyped exceptions
                raise ModelError(f"{self.card.spec}: ONNX Runtime failed: {exc}") from exc
        return {n: np.asarray(r) for n, r in zip(names, results, strict=True)}


def _shape_fits(actual: Sequence[int], declared: Sequence[Any]) -> bool:
    if len(actual) != len(declared):
        return False
    return all(not isinstance(d, int) or d == a for a, d in zip(actual, declared, strict=True))


_cache: dict[tuple[str, int, int, str], LoadedModel] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget loaded sessions (tests; after replacing files)."""
    with _cache_lock:
        _cache.clear()


def load_registered(model: RegisteredModel) -> LoadedModel:
    """Verify the file's sha256 against the card, then open an ONNX Runtime session (cached per process)."""
    path = model.file
    try:
        st = path.stat()
    except OSError:
        raise ModelCardError(f"{path}: model file missing (the card {model.path / CARD_JSON} refers to it)") from None
    wanted = providers()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, model.card.sha256 + "|" + ",".join(wanted))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    found = file_sha256(path)
    if found != model.card.sha256:
        raise ModelIntegrityError(path, model.card.sha256, found)
    t0 = time.perf_counter()
    options = _session_options()
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelCardError(f"{path}: ONNX Runtime cannot load the model: {exc}") from None
    check_io(session, model.card, str(path), ModelCardError)
    loaded = LoadedModel(card=model.card, session=session, where=model.where, path=model.path)
    log.info(
        "loaded model %s (%s) on %s in %.2f s",
        model.card.spec,
        model.where,
        session.get_providers()[0],
        time.perf_counter() - t0,
    )
    with _cache_lock:
        _cache[key] = loaded
    return loaded


def load_model(name: str, version: str | None = None) -> LoadedModel:
    """Load ``name`` at ``version`` (newest when None), checksum verified."""
    return load_registered(find_model(name, version, list_models()))


def resolve(spec: str | None, task: str) -> list[LoadedModel]:
    """The models to run for ``task``, loaded (see :func:`~neuronav.analysis.models.select_models` for which)."""
    return [load_registered(m) for m in select_models(spec, task)]


def check_io(session: ort.InferenceSession, card: ModelCard, where: str, error: type[ModelError]) -> None:
    """The session's inputs and outputs must be the card's: names, ranks, fixed dims, dtypes (``error`` otherwise)."""
    for kind, actual, declared in (
        ("input", session.get_inputs(), card.inputs),
        ("output", session.get_outputs(), card.outputs),
    ):
        by_name = {a.name: a for a in actual}
        if sorted(by_name) != sorted(d.name for d in declared):
            raise error(
                f"{where}: the model's {kind}s are {sorted(by_name)}, the card declares {[d.name for d in declared]}"
            )
        for d in declared:
            a = by_name[d.name]
            a_shape = list(a.shape)
            ok = len(a_shape) == len(d.shape) and all(
                _dim_fits(cd, md) for cd, md in zip(d.shape, a_shape, strict=True)
            )
            if not ok:
                raise error(f"{where}: {kind} {d.name!r} has shape {a_shape} in the model, the card declares {d.shape}")
            if _ort_dtype(a.type) != d.dtype:
                raise error(
                    f"{where}: {kind} {d.name!r} is {_ort_dtype(a.type)} in the model, the card declares {d.dtype}"
                )


def _dim_fits(card_dim: int | str, model_dim: Any) -> bool:
    """A fixed card dim must equal a fixed model dim (a free model dim accepts it: the card promises
    that size); a free card dim needs a free model dim (a card must not claim freedom the model lacks)."""
    if isinstance(card_dim, int):
        return not isinstance(model_dim, int) or model_dim == card_dim
    return not isinstance(model_dim, int)
