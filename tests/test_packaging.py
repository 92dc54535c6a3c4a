"""The built package works on its own: a wheel installed into a clean venv analyses a study with the
shipped models it carries as package data (not the source tree's).

No network: the wheel is built without build isolation and installed without dependencies; the new
venv borrows the dependencies of the interpreter running the tests through a .pth file (a path
line only, so that interpreter's own neuronav, an editable install of src/, is not imported).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from neuronav.phantom import generate_study

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str | Path], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, env=env, cwd=cwd, timeout=900
    )
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.slow
def test_wheel_install_analyzes_a_phantom_with_the_shipped_models(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith("NEURONAV_")
    }
    env |= {
        "NEURONAV_DATA_DIR": str(tmp_path / "data"),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "PYTHONNOUSERSITE": "1",
    }

    # build from a copy, so the checkout gets no build/ or egg-info
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "NOTICE"):
        shutil.copy2(REPO / name, source / name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "webui", "node_modules")
    shutil.copytree(REPO / "src", source / "src", ignore=junk)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, source], env, tmp_path)
    (wheel,) = dist.glob("neuronav-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], env, tmp_path)
    python = venv / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env, tmp_path)
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib.stdout.strip()) / "_neuronav_test_deps.pth").write_text("\n".join(deps) + "\n")
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], env, tmp_path)

    where = _run(
        [
            python,
            "-c",
            "import neuronav, neuronav.config as c; print(neuronav.__file__); print(c.read_settings().models_dir)",
        ],
        env,
        tmp_path,
    ).stdout.split()
    installed = Path(purelib.stdout.strip()) / "neuronav"
    assert Path(where[0]) == installed / "__init__.py", f"imported {where[0]}, not the installed wheel"
    assert Path(where[1]) == installed / "shipped_models"

    listed = _run([venv / "bin" / "neuronav", "models", "--verify"], env, tmp_path).stdout
    assert listed.count(" ok ") == 4 and "shipped" in listed  # the four shipped models, checksums verified

    generate_study(tmp_path / "study", seed=7, lesion="glioma", fmt="nifti", profile="iso1mm")
    nifti = tmp_path / "study" / "nifti"
    out = tmp_path / "out"
    _run(
        [venv / "bin" / "neuronav", "analyze", "--out", out]
        + [a for s in ("T1", "T1c", "T2", "FLAIR") for a in (f"--{s.lower()}", str(nifti / f"{s}.nii.gz"))],
        env,
        tmp_path,
    )
    findings = json.loads((out / "findings.json").read_text())
    cards = {
        p.parent.parent.name: json.loads(p.read_text())["sha256"]
        for p in (installed / "shipped_models").glob("*/*/card.json")
    }
    used = [
        *findings["segmentation"]["produced_by"],
        findings["detection"]["produced_by"],
        findings["classification"]["produced_by"],
    ]
    assert {p["name"] for p in used} == set(cards)
    assert all(p["sha256"] == cards[p["name"]] for p in used)
    assert findings["detection"]["tumour_detected"] is True
    assert not (tmp_path / "data" / "secrets.json").exists()  # analysing generates no secrets
