"""The exception tree drawn in ``neuronav.errors`` is the real one: every drawn name is a class in the
place the drawing says, every subclass of NeuroNavError is drawn, and drawn under its real parent."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import neuronav
from neuronav import errors
from neuronav.errors import NeuroNavError


def _all_error_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(neuronav.__path__, "neuronav."):
        if ".migrations" in info.name or info.name.endswith("celery_app"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[name] = obj
    return found


def _drawn_tree() -> list[tuple[int, str]]:
    """(depth, class name) for each line of the drawing: each level is indented four more columns."""
    doc = errors.__doc__ or ""
    start = doc.index("::\n") + 3
    drawing = doc[start:].strip("\n").split("\n\n")[0]
    rows = []
    root_col: int | None = None
    for line in drawing.splitlines():
        m = re.search(r"[A-Z][A-Za-z]+", line)
        if m is None:
            continue
        if root_col is None:
            root_col = m.start()
        rows.append(((m.start() - root_col) // 4, m.group(0)))
    return rows


def test_every_error_class_derives_from_neuronav_error() -> None:
    stray = sorted(name for name, cls in _all_error_classes().items() if not issubclass(cls, NeuroNavError))
    assert stray == [], f"errors outside the NeuroNavError tree: {stray}"


def test_the_drawn_tree_is_the_real_tree() -> None:
    real = _all_error_classes()
    rows = _drawn_tree()
    assert rows[0] == (0, "NeuroNavError")
    drawn = {name for _, name in rows}
    missing = sorted(name for name, cls in real.items() if issubclass(cls, NeuroNavError) and name not in drawn)
    assert missing == [], f"subclasses of NeuroNavError missing from the drawing in neuronav.errors: {missing}"
    unknown = sorted(drawn - set(real))
    assert unknown == [], f"names drawn in neuronav.errors that are no class: {unknown}"
    parents: list[str] = []
    for depth, name in rows:
        del parents[depth:]
        if parents:
            assert issubclass(real[name], real[parents[-1]]), f"{name} is drawn under {parents[-1]}, but is not one"
        parents.append(name)


def test_the_drawing_would_catch_a_new_undrawn_error() -> None:
    # the check above must be able to fail: an error added without being drawn is found
    class UndrawnError(NeuroNavError):
        pass

    real = {**_all_error_classes(), "UndrawnError": UndrawnError}
    drawn = {name for _, name in _drawn_tree()}
    assert [n for n, c in real.items() if issubclass(c, NeuroNavError) and n not in drawn] == ["UndrawnError"]
