"""The catalogue: which models are installed, where, and which of them an analysis runs.

Layout (the same for both places)::

    <models dir>/<name>/<version>/model.onnx   the network, run by ONNX Runtime only
    <models dir>/<name>/<version>/card.json    its card (:mod:`neuronav.analysis.models.cards`)
    <models dir>/<name>/<version>/card.md      the same card for humans, generated from card.json

Both places are settings (:mod:`neuronav.config`, read on each lookup with
:func:`~neuronav.config.read_settings`, so no secret is generated): shipped models are in
``NEURONAV_MODELS_DIR``, by default ``neuronav/shipped_models`` installed with the package (package
data, so a wheel carries them); models a site registers itself go to ``NEURONAV_USER_MODELS_DIR``,
by default ``$XDG_DATA_HOME/neuronav/models``, else ``~/.local/share/neuronav/models``. A shipped
model shadows a user model of the same name and version.

Ensembles: models whose cards share ``ensemble`` and ``version`` form one ensemble release.
:func:`select_models` picks the models of a task from their cards alone (nothing is loaded or
hashed); a folder with a broken card is reported, never silently dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from neuronav.analysis.models.cards import CARD_JSON, ModelCard, file_sha256, read_card
from neuronav.analysis.models.errors import ModelCardError, ModelNotFoundError
from neuronav.config import read_settings

log = logging.getLogger(__name__)

Where = Literal["shipped", "user"]


# -------------------------------------------------------------------------------------- locations


def shipped_models_dir() -> Path:
    """Where the shipped models are: ``NEURONAV_MODELS_DIR``, by default the package's own folder."""
    return read_settings().models_dir


def user_models_dir() -> Path:
    """Where a site's own models are registered: ``NEURONAV_USER_MODELS_DIR`` (may not exist yet)."""
    return read_settings().user_models_dir


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
        log.warning("model catalogue: %s", p.problem)
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


# ---------------------------------------------------------------------------------------- select


def find_model(name: str, version: str | None, models: Sequence[RegisteredModel]) -> RegisteredModel:
    """``name`` at ``version`` (the newest when None) among ``models``; :class:`ModelNotFoundError` otherwise."""
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


def _ensembles(models: Sequence[RegisteredModel], task: str) -> dict[tuple[str, str], list[RegisteredModel]]:
    groups: dict[tuple[str, str], list[RegisteredModel]] = {}
    for m in models:
        if m.card.ensemble and m.card.task == task:
            groups.setdefault((m.card.ensemble, m.card.version), []).append(m)
    return groups


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
                    f"no shipped {task} model (looked in {shipped_models_dir()}); "
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
