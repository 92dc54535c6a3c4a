"""The layering rules of docs/ARCHITECTURE.md, checked on the source: edges are thin and stay at the edge.

* nothing outside ``neuronav.service`` imports from it (the HTTP edge is one edge among several: the
  DICOM and HL7 listeners and the CLI call ``neuronav.workflow``, never a route);
* a route module imports no other route module;
* ``neuronav.workflow`` and ``neuronav.security`` import neither FastAPI nor Starlette.
"""

from __future__ import annotations

import ast
from pathlib import Path

import neuronav

SRC = Path(neuronav.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved), also inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(("neuronav", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _modules(under: str = "") -> list[Path]:
    return sorted((SRC / under).rglob("*.py"))


def _name(path: Path) -> str:
    return ".".join(("neuronav", *path.relative_to(SRC).with_suffix("").parts))


def test_nothing_outside_the_http_edge_imports_it() -> None:
    outside = [p for p in _modules() if "service" not in p.relative_to(SRC).parts[:1] and p.name != "cli.py"]
    offenders = {
        _name(p): sorted(m for m in _imports(p) if m == "neuronav.service" or m.startswith("neuronav.service."))
        for p in outside
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, f"modules outside neuronav.service importing it: {offenders}"


def test_the_cli_imports_only_the_app_factory_from_the_http_edge() -> None:
    used = sorted(m for m in _imports(SRC / "cli.py") if m.startswith("neuronav.service"))
    assert set(used) <= {"neuronav.service.app", "neuronav.service.app.create_app"}, used


def test_a_route_module_imports_no_other_route_module() -> None:
    offenders = {}
    for path in _modules("service/routes"):
        if path.name == "__init__.py":
            continue
        others = sorted(
            m
            for m in _imports(path)
            if m.startswith("neuronav.service.routes.") and m.split(".")[3] != path.stem and m.count(".") >= 3
        )
        if others:
            offenders[path.stem] = others
    assert offenders == {}, f"route modules importing other route modules: {offenders}"


def test_the_core_does_not_know_http() -> None:
    offenders = {}
    for under in ("workflow", "security"):
        for path in _modules(under):
            http = sorted(m for m in _imports(path) if m.split(".")[0] in ("fastapi", "starlette"))
            if http:
                offenders[_name(path)] = http
    assert offenders == {}, f"core modules importing the HTTP framework: {offenders}"


def test_the_import_checks_see_function_level_imports() -> None:
    # the checks above must be able to fail: the CLI imports the app factory inside ``serve`` only, and
    # the walker finds it (an import hidden in a function is not missed)
    assert "neuronav.service.app" in _imports(SRC / "cli.py")
