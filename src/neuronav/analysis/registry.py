"""The model registry: shipped and user-registered ONNX models, their cards, checksums and sessions.

Layout (the same for both places)::

    <models dir>/<name>/<version>/model.onnx   the network, run by ONNX Runtime only
    <models dir>/<name>/<version>/card.json    its :class:`ModelCard` (the source of truth)
    <models dir>/<name>/<version>/card.md      the same card for humans, generated from card.json

Shipped models live in ``$NEURONAV_MODELS_DIR`` when that is set, else in the repository's
top-level ``models/`` folder. Models a site registers itself (:func:`register_model`) go to
``$NEURONAV_USER_MODELS_DIR``, else ``$XDG_DATA_HOME/neuronav/models``, else
``~/.local/share/neuronav/models``. A shipped model shadows a user model of the same name and version.

Every load verifies the sha256 of the file against its card before ONNX Runtime sees it
(:class:`ModelIntegrityError` otherwise). Every card must say "not for clinical use".

Ensembles: models whose cards share ``ensemble`` and ``version`` form one ensemble release; the
members are averaged by :func:`neuronav.analysis.inference.segment`. ``resolve(None, task)`` gives
the newest shipped ensemble of the task (or, lacking one, the newest shipped model).

A MONAI bundle (``models/model.ts`` TorchScript + ``configs/metadata.json``, as a folder or zip) is
converted to ONNX at registration; that step alone needs torch (the ``train`` extra). Importing this
module never imports torch.

Errors (all :class:`neuronav.errors.NeuroNavError`)::

    ModelError
    ├── ModelNotFoundError        no model / ensemble of that name (the message lists the available ones)
    ├── ModelCardError            a card that is not valid (names the card file and the problem)
    ├── ModelIntegrityError       the file's sha256 differs from its card (names file, expected, found)
    └── ModelRegistrationError    a model that cannot be registered (shapes, conflicts, missing torch)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from neuronav.errors import NeuroNavError
from neuronav.findings import ProducedBy

log = logging.getLogger(__name__)

CLINICAL_USE_TEXT = "not for clinical use"
MODEL_FILE = "model.onnx"
CARD_JSON = "card.json"
CARD_MD = "card.md"
SEQUENCES: tuple[str, ...] = ("T1", "T1c", "T2", "FLAIR")
BRATS_LABELS: dict[str, str] = {"0": "background", "1": "necrotic core", "2": "oedema", "3": "enhancing"}
WORKING_GRID_SPACE = (
    "neuronav working grid: MNI152 2 mm, 96×112×96, channels T1,T1c,T2,FLAIR z-scored in the brain mask"
)

Task = Literal["segmentation", "detection", "classification"]
Where = Literal["shipped", "user"]
OutputTransform = Literal["none", "softmax", "brats_regions"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
_MAX_METADATA_BYTES = 4 * 1024 * 1024
_MAX_TORCHSCRIPT_BYTES = 4 * 1024**3


# ----------------------------------------------------------------------------------------- errors


class ModelError(NeuroNavError):
    """Base of the registry's errors."""


class ModelNotFoundError(ModelError):
    """No model or ensemble of the requested name/version/task."""


class ModelCardError(ModelError):
    """A model card that is missing, unreadable or invalid."""


class ModelIntegrityError(ModelError):
    """The model file does not match the sha256 on its card."""

    def __init__(self, path: Path, expected: str, found: str) -> None:
        self.path = path
        self.expected = expected
        self.found = found
        super().__init__(
            f"{path}: checksum mismatch, the card expects sha256 {expected} but the file has {found}; "
            "the file was changed or damaged, refusing to run it"
        )


class ModelRegistrationError(ModelError):
    """A model that cannot be registered."""


# ------------------------------------------------------------------------------------------- card


class TensorSpec(BaseModel):
    """One input or output of a model. ``shape``: ints are fixed, strings name a free dimension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    shape: list[int | str]
    dtype: str = "float32"
    description: str = ""
    channels: list[str] | None = None  # input channels in order (e.g. ["T1", "T1c", "T2", "FLAIR"])


class ModelCard(BaseModel):
    """What a model is, how it was made, how well it does and what it must not be used for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    task: Task
    framework: Literal["onnx"] = "onnx"
    file: str = MODEL_FILE
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: dict[str, str] = {}
    input_space: str
    training: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    intended_use: str
    limitations: str
    clinical_use: str
    licence: str
    created: str
    ensemble: str | None = None
    source: dict[str, Any] | None = None  # provenance of an imported model (bundle, conversion)

    @field_validator("name", "version")
    @classmethod
    def _safe(cls, v: str) -> str:
        if not _SAFE_NAME.match(v):
            raise ValueError(f"{v!r} must be 1-100 characters of letters, digits, '.', '_', '+', '-'")
        return v

    @field_validator("ensemble")
    @classmethod
    def _safe_ensemble(cls, v: str | None) -> str | None:
        return None if v is None else cls._safe(v)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        return v

    @field_validator("file")
    @classmethod
    def _plain_file(cls, v: str) -> str:
        if v != MODEL_FILE:
            raise ValueError(f"file must be {MODEL_FILE!r}")
        return v

    @field_validator("clinical_use")
    @classmethod
    def _not_clinical(cls, v: str) -> str:
        if CLINICAL_USE_TEXT not in v.lower():
            raise ValueError(f"must say {CLINICAL_USE_TEXT!r}: no model here is validated for clinical use")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        keys = sorted(int(k) for k in v) if all(k.isdigit() for k in v) else None
        if keys is None or keys != list(range(len(v))):
            raise ValueError("label keys must be the class indices '0', '1', … without gaps")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if not self.inputs or not self.outputs:
            raise ValueError("a card needs at least one input and one output")
        if self.task in ("segmentation", "classification") and not self.labels:
            raise ValueError(f"a {self.task} card needs labels")
        if self.task == "segmentation":
            spec = self.inputs[0]
            if len(spec.shape) != 5:
                raise ValueError("a segmentation input must be 5-D (batch, channel, x, y, z)")
            channels = spec.channels
            if channels is not None and (
                len(channels) != len(set(channels)) or not set(channels) <= set(SEQUENCES) or not channels
            ):
                raise ValueError(f"input channels must be distinct names among {', '.join(SEQUENCES)}")
        return self

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def channels(self) -> list[str]:
        """Input channel names in order (segmentation); the working-grid order when the card omits it."""
        return list(self.inputs[0].channels or SEQUENCES)


def parse_card(data: Mapping[str, Any], where: str = "card") -> ModelCard:
    """Validate card data; :class:`ModelCardError` naming ``where`` and each problem otherwise."""
    try:
        return ModelCard.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}" for e in exc.errors())
        raise ModelCardError(f"{where}: invalid model card: {problems}") from None


def read_card(path: Path) -> ModelCard:
    """Read and validate a card.json."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelCardError(f"{path}: cannot read the model card: {exc}") from None
    if not isinstance(data, dict):
        raise ModelCardError(f"{path}: a model card must be a JSON object")
    return parse_card(data, str(path))


def card_markdown(card: ModelCard) -> str:
    """The human-readable card (card.md), generated from the card; never edited by hand."""

    def block(value: Any) -> str:
        return "```json\n" + json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n```"

    def tensors(specs: Sequence[TensorSpec]) -> str:
        rows = ["| name | shape | dtype | channels | description |", "|---|---|---|---|---|"]
        for s in specs:
            shape = "×".join(str(d) for d in s.shape)
            rows.append(f"| {s.name} | {shape} | {s.dtype} | {', '.join(s.channels or [])} | {s.description} |")
        return "\n".join(rows)

    parts = [
        f"# {card.name} {card.version}",
        "",
        f"> **{card.clinical_use}**",
        "",
        "<!-- generated from card.json by neuronav.analysis.registry.write_card; edit card.json instead -->",
        "",
        "| | |",
        "|---|---|",
        f"| task | {card.task} |",
        f"| framework | {card.framework} ({card.file}) |",
        f"| sha256 | `{card.sha256}` |",
        f"| ensemble | {card.ensemble or '—'} |",
        f"| created | {card.created} |",
        f"| licence | {card.licence} |",
        "",
        "## Intended use",
        "",
        card.intended_use,
        "",
        "## Limitations",
        "",
        card.limitations,
        "",
        "## Inputs",
        "",
        f"Input space: {card.input_space}",
        "",
        tensors(card.inputs),
        "",
        "## Outputs",
        "",
        tensors(card.outputs),
        "",
    ]
    if card.labels:
        parts += ["## Labels", "", "| value | label |", "|---|---|"]
        parts += [f"| {k} | {v} |" for k, v in sorted(card.labels.items(), key=lambda kv: int(kv[0]))]
        parts.append("")
    parts += ["## Training", "", block(card.training), "", "## Metrics", "", block(card.metrics), ""]
    if card.source:
        parts += ["## Source and conversion", "", block(card.source), ""]
    return "\n".join(parts)


def write_card(model_dir: Path, card: ModelCard) -> None:
    """Write ``card.json`` and the generated ``card.md`` into ``model_dir`` (each atomically)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(card.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False) + "\n"
    _write_atomic(model_dir / CARD_JSON, text)
    _write_atomic(model_dir / CARD_MD, card_markdown(card))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -------------------------------------------------------------------------------------- locations


def _repo_models_dir() -> Path | None:
    repo = Path(__file__).resolve().parents[3]  # src/neuronav/analysis/registry.py → repository root
    candidate = repo / "models"
    if candidate.is_dir() and (repo / "pyproject.toml").is_file():
        return candidate
    return None


def shipped_models_dir() -> Path | None:
    """``$NEURONAV_MODELS_DIR`` when set, else the repository's ``models/``; None when neither exists."""
    env = os.environ.get("NEURONAV_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return _repo_models_dir()


def user_models_dir() -> Path:
    """Where :func:`register_model` puts a site's own models (may not exist yet)."""
    env = os.environ.get("NEURONAV_USER_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "neuronav" / "models"


# --------------------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class RegisteredModel:
    """A card found on disk, where it came from and its folder."""

    card: ModelCard
    where: Where
    path: Path  # the <name>/<version> folder

    @property
    def file(self) -> Path:
        return self.path / self.card.file


@dataclass(frozen=True)
class CardProblem:
    """A folder in a models directory whose card could not be used."""

    where: Where
    path: Path
    problem: str


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions numerically by their dot-separated parts ("1.10" > "1.9"; numbers > words)."""
    parts: list[tuple[int, int | str]] = []
    for p in re.split(r"[.+-]", version):
        parts.append((1, int(p)) if p.isdigit() else (0, p))
    return tuple(parts)


def scan_models(
    shipped_dir: Path | None = None, user_dir: Path | None = None
) -> tuple[list[RegisteredModel], list[CardProblem]]:
    """All models with a valid card, and the folders whose card is broken (never silently dropped)."""
    found: dict[tuple[str, str], RegisteredModel] = {}
    problems: list[CardProblem] = []
    places: list[tuple[Where, Path | None]] = [
        ("shipped", shipped_dir if shipped_dir is not None else shipped_models_dir()),
        ("user", user_dir if user_dir is not None else user_models_dir()),
    ]
    for where, base in places:
        if base is None or not base.is_dir():
            continue
        for card_path in sorted(base.glob(f"*/*/{CARD_JSON}")):
            folder = card_path.parent
            if folder.parent.name.startswith(".") or folder.name.startswith("."):
                continue
            try:
                card = read_card(card_path)
            except ModelCardError as exc:
                problems.append(CardProblem(where, folder, str(exc)))
                continue
            if (card.name, card.version) != (folder.parent.name, folder.name):
                problems.append(
                    CardProblem(where, folder, f"{card_path}: the card names {card.spec}, the folder does not")
                )
                continue
            key = (card.name, card.version)
            if key in found:  # shipped first: a user model cannot shadow a shipped one
                problems.append(CardProblem(where, folder, f"{card.spec} is shadowed by the shipped model"))
                continue
            found[key] = RegisteredModel(card, where, folder)
    models = sorted(found.values(), key=lambda m: (m.card.name, version_key(m.card.version)))
    return models, problems


def list_models(task: str | None = None) -> list[RegisteredModel]:
    """Every usable model (shipped first on name clashes), sorted by name and version.

    Folders with a broken card are logged as warnings; :func:`scan_models` returns them.
    """
    models, problems = scan_models()
    for p in problems:
        log.warning("model registry: %s", p.problem)
    return [m for m in models if task is None or m.card.task == task]


def _metrics_summary(metrics: Mapping[str, Any], limit: int = 6) -> str:
    items: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, bool):
            items.append(f"{prefix}={value}")
        elif isinstance(value, int | float):
            items.append(f"{prefix}={value:.3g}")

    walk("", metrics)
    if not items:
        return "—"
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def model_rows(verify: bool = False) -> list[dict[str, str]]:
    """Rows for ``neuronav models``: name, version, task, ensemble, sha256 (first 12), where, metrics, status.

    ``status`` is "ok" (checksum verified, with ``verify``), "not verified", "missing file",
    "checksum mismatch" or "invalid card: …" (broken cards are shown, not hidden).
    """
    models, problems = scan_models()
    rows: list[dict[str, str]] = []
    for m in models:
        if not m.file.is_file():
            status = "missing file"
        elif verify:
            status = "ok" if file_sha256(m.file) == m.card.sha256 else "checksum mismatch"
        else:
            status = "not verified"
        rows.append(
            {
                "name": m.card.name,
                "version": m.card.version,
                "task": m.card.task,
                "ensemble": m.card.ensemble or "",
                "sha256": m.card.sha256[:12],
                "where": m.where,
                "metrics": _metrics_summary(m.card.metrics),
                "status": status,
            }
        )
    for p in problems:
        rows.append(
            {
                "name": p.path.parent.name,
                "version": p.path.name,
                "task": "",
                "ensemble": "",
                "sha256": "",
                "where": p.where,
                "metrics": "",
                "status": f"invalid card: {p.problem}",
            }
        )
    return rows


# --------------------------------------------------------------------------------------- loading


def _threads() -> int:
    raw = os.environ.get("NEURONAV_THREADS")
    if raw is None or raw == "":
        return os.cpu_count() or 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        from neuronav.errors import ConfigError

        raise ConfigError(f"NEURONAV_THREADS must be a positive integer, not {raw!r}")
    return n


def _session_options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


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

    def produced_by(self) -> ProducedBy:
        return ProducedBy(name=self.card.name, version=self.card.version, kind="model", sha256=self.card.sha256)

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


def _find(name: str, version: str | None, models: Sequence[RegisteredModel]) -> RegisteredModel:
    same = [m for m in models if m.card.name == name]
    if version is not None:
        same = [m for m in same if m.card.version == version]
    if not same:
        raise ModelNotFoundError(_not_found_message(f"{name}@{version}" if version else name, models))
    return max(same, key=lambda m: version_key(m.card.version))


def _not_found_message(spec: str, models: Sequence[RegisteredModel], task: str | None = None) -> str:
    avail = sorted({m.card.spec for m in models if task is None or m.card.task == task})
    groups = sorted(
        {f"{m.card.ensemble}@{m.card.version}" for m in models if m.card.ensemble and (task in (None, m.card.task))}
    )
    what = f"{task} model" if task else "model"
    listing = ", ".join(avail) or "none"
    ens = f"; ensembles: {', '.join(groups)}" if groups else ""
    return f"no {what} {spec!r}; available: {listing}{ens} (see `neuronav models`)"


def load_registered(model: RegisteredModel) -> LoadedModel:
    """Verify the file's sha256 against the card, then open an ONNX Runtime session (cached per process)."""
    path = model.file
    try:
        st = path.stat()
    except OSError:
        raise ModelCardError(f"{path}: model file missing (the card {model.path / CARD_JSON} refers to it)") from None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, model.card.sha256)
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
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelCardError(f"{path}: ONNX Runtime cannot load the model: {exc}") from None
    _check_io(session, model.card, str(path), ModelCardError)
    loaded = LoadedModel(card=model.card, session=session, where=model.where, path=model.path)
    log.info("loaded model %s (%s) in %.2f s", model.card.spec, model.where, time.perf_counter() - t0)
    with _cache_lock:
        _cache[key] = loaded
    return loaded


def load_model(name: str, version: str | None = None) -> LoadedModel:
    """Load ``name`` at ``version`` (newest when None), checksum verified."""
    return load_registered(_find(name, version, list_models()))


def _check_io(
    session: ort.InferenceSession, card: ModelCard, where: str, error: type[ModelError] = ModelRegistrationError
) -> None:
    """The session's inputs and outputs must be the card's: names, ranks, fixed dims, dtypes."""
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


# --------------------------------------------------------------------------------------- resolve


def _ensembles(models: Sequence[RegisteredModel], task: str) -> dict[tuple[str, str], list[RegisteredModel]]:
    groups: dict[tuple[str, str], list[RegisteredModel]] = {}
    for m in models:
        if m.card.ensemble and m.card.task == task:
            groups.setdefault((m.card.ensemble, m.card.version), []).append(m)
    return groups


def resolve(spec: str | None, task: str) -> list[LoadedModel]:
    """The models to run for ``task``, loaded (see :func:`select_models` for which)."""
    return [load_registered(m) for m in select_models(spec, task)]


def select_models(spec: str | None, task: str) -> list[RegisteredModel]:
    """The models to run for ``task``, from their cards only (nothing is loaded or hashed).

    - ``None``: the newest shipped ensemble release of the task (by version, then creation date),
      else the newest shipped model of the task;
    - ``"NAME"`` / ``"NAME@VERSION"``: that model (newest version without one), or, when NAME is an
      ensemble group, all its members of that (or the newest) version.

    Raises :class:`ModelNotFoundError` listing what is available.
    """
    models = list_models()
    if spec is None:
        shipped = [m for m in models if m.where == "shipped"]
        groups = _ensembles(shipped, task)
        if groups:
            best = max(groups, key=lambda k: (version_key(k[1]), max(m.card.created for m in groups[k]), k[0]))
            members = groups[best]
        else:
            singles = [m for m in shipped if m.card.task == task]
            if not singles:
                raise ModelNotFoundError(
                    f"no shipped {task} model (looked in {shipped_models_dir() or 'no models folder'}); "
                    f"{_not_found_message('default', models, task)}"
                )
            members = [max(singles, key=lambda m: (version_key(m.card.version), m.card.created))]
        return sorted(members, key=lambda m: m.card.name)

    name, _, version = spec.partition("@")
    if not name or (version == "" and "@" in spec):
        raise ModelNotFoundError(f"model spec {spec!r} must be NAME or NAME@VERSION")
    ver = version or None
    direct = [m for m in models if m.card.name == name and (ver is None or m.card.version == ver)]
    if direct:
        chosen = max(direct, key=lambda m: version_key(m.card.version))
        if chosen.card.task != task:
            raise ModelNotFoundError(f"{chosen.card.spec} is a {chosen.card.task} model, not a {task} model")
        return [chosen]
    groups = {k: v for k, v in _ensembles(models, task).items() if k[0] == name and (ver is None or k[1] == ver)}
    if groups:
        best = max(groups, key=lambda k: version_key(k[1]))
        return sorted(groups[best], key=lambda m: m.card.name)
    raise ModelNotFoundError(_not_found_message(spec, models, task))


# ------------------------------------------------------------------------------------ registering


def register_model(
    path: Path,
    card: Path | Mapping[str, Any],
    *,
    user_dir: Path | None = None,
    output_transform: OutputTransform | None = None,
    overwrite: bool = False,
) -> ModelCard:
    """Register a site's own model, with its card, into the user models folder.

    ``path``: an ONNX file, or a MONAI bundle (folder or zip with ``models/model.ts`` and
    ``configs/metadata.json``), which is converted to ONNX (needs torch: the ``train`` extra).
    ``card``: card.json path or dict. ``sha256``, ``file``, ``framework`` and ``created`` are filled
    in; for a bundle, name/version/inputs/outputs/labels default from its metadata. The card must
    say "not for clinical use".
    ``output_transform`` (bundles): what to put after the network so that the ONNX model outputs
    'probabilities': "softmax" (class logits), "brats_regions" (sigmoid logits of tumour core,
    whole tumour, enhancing tumour, as MONAI's BraTS bundle, turned into BraTS label
    probabilities) or "none"; default: "brats_regions" when the metadata says so, else "softmax".
    Returns the card as written.
    """
    card_data = _card_input(card)
    target_base = user_dir if user_dir is not None else user_models_dir()
    path = Path(path)
    if not path.exists():
        raise ModelRegistrationError(f"{path}: no such file or folder")
    with tempfile.TemporaryDirectory(prefix="neuronav-register-") as tmp:
        if path.is_dir() or zipfile.is_zipfile(path):
            onnx_path, card_data = _convert_bundle(path, card_data, Path(tmp), output_transform)
        else:
            onnx_path = path
        return _register_onnx(onnx_path, card_data, target_base, overwrite)


def _card_input(card: Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(card, Mapping):
        return dict(card)
    try:
        data = json.loads(Path(card).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelCardError(f"{card}: cannot read the model card: {exc}") from None
    if not isinstance(data, dict):
        raise ModelCardError(f"{card}: a model card must be a JSON object")
    return data


def _register_onnx(onnx_path: Path, data: dict[str, Any], base: Path, overwrite: bool) -> ModelCard:
    where = str(onnx_path)
    digest = file_sha256(onnx_path)
    if "sha256" in data and data["sha256"] != digest:
        raise ModelIntegrityError(onnx_path, str(data["sha256"]), digest)
    data = {**data, "sha256": digest, "file": MODEL_FILE, "framework": "onnx"}
    data.setdefault("created", datetime.now(UTC).strftime("%Y-%m-%d"))
    if CLINICAL_USE_TEXT not in str(data.get("clinical_use", "")).lower():
        raise ModelCardError(
            f"{where}: the card must say {CLINICAL_USE_TEXT!r} in clinical_use; refusing to register the model"
        )
    card = parse_card(data, f"card for {where}")
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelRegistrationError(f"{where}: ONNX Runtime cannot load this file: {exc}") from None
    _check_io(session, card, where)
    if card.task == "segmentation":
        out = card.outputs[0].shape
        if len(out) != 5 or (isinstance(out[1], int) and out[1] != len(card.labels)):
            raise ModelRegistrationError(
                f"{where}: a segmentation model must output (1, {len(card.labels)} labels, x, y, z) "
                f"probabilities, the card declares {out}"
            )
    shipped = shipped_models_dir()
    if shipped is not None and (shipped / card.name / card.version / CARD_JSON).exists():
        raise ModelRegistrationError(f"{card.spec} is a shipped model; register under another name or version")
    final = base / card.name / card.version
    if final.exists() and not overwrite:
        raise ModelRegistrationError(f"{final}: {card.spec} is already registered (pass overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{card.version}.", dir=final.parent))
    try:
        shutil.copyfile(onnx_path, staging / MODEL_FILE)
        if file_sha256(staging / MODEL_FILE) != digest:
            raise ModelIntegrityError(staging / MODEL_FILE, digest, file_sha256(staging / MODEL_FILE))
        write_card(staging, card)
        if final.exists():
            old = final.with_name(f".{final.name}.old.{os.getpid()}")
            final.replace(old)
            staging.replace(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.replace(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    clear_cache()
    log.info("registered model %s in %s", card.spec, final)
    return card


# ------------------------------------------------------------------------------- MONAI bundles


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


def _convert_bundle(
    path: Path, user: dict[str, Any], tmp: Path, transform: OutputTransform | None
) -> tuple[Path, dict[str, Any]]:
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
