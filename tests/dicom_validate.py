"""The independent DICOM validators the tests run on every object NeuroNav writes.

* ``dciodvfy`` (David Clunie's dicom3tools, Debian package ``dicom3tools``): the IOD, module and
  attribute rules of PS3.3 for any object.
* PixelMed's ``com.pixelmed.validate.DicomSRValidator`` (Debian package ``pixelmed-apps``): the SR
  IOD and its templates (TID 1500 and everything it includes).

Both print ``Error…`` and ``Warning…`` lines; :class:`Verdict` keeps them apart. The tests fail on
any error and print the warnings, so that they show in the test output. A missing tool FAILS the
test (never a skip): scripts/setup.sh installs both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PIXELMED_JAR = Path(os.environ.get("NEURONAV_PIXELMED_JAR", "/usr/share/java/pixelmed.jar"))
# PixelMed's template stylesheets are larger than the JDK's default limits for secure XSLT processing
JAVA_XML_LIMITS = ["-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0", "-Djdk.xml.xpathTotalOpLimit=0"]


@dataclass
class Verdict:
    tool: str
    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    output: str = ""

    def report(self) -> str:
        """The warnings (printed by the tests) and errors, one per line."""
        lines = [f"{self.tool} {self.path.name}: {len(self.errors)} errors, {len(self.warnings)} warnings"]
        lines += [f"  {w}" for w in self.warnings] + [f"  {e}" for e in self.errors]
        return "\n".join(lines)


def _split(tool: str, path: Path, output: str) -> Verdict:
    verdict = Verdict(tool, path, output=output)
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("Error"):
            verdict.errors.append(text)
        elif text.startswith("Warning"):
            verdict.warnings.append(text)
    return verdict


def dciodvfy(path: Path) -> Verdict:
    """dciodvfy's verdict on one file."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy is not installed (Debian package dicom3tools); run scripts/setup.sh")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120, check=False)
    verdict = _split("dciodvfy", path, proc.stdout + proc.stderr)
    if "Error - Information Object Not found" in verdict.output or not verdict.output.strip():
        pytest.fail(f"dciodvfy did not recognise {path}:\n{verdict.output}")
    return verdict


def dciodvfy_all(paths: Iterable[Path]) -> list[Verdict]:
    return [dciodvfy(p) for p in paths]


def pixelmed_sr(path: Path) -> Verdict:
    """PixelMed DicomSRValidator's verdict on one SR file (the IOD and its templates)."""
    java = shutil.which("java")
    if java is None or not PIXELMED_JAR.is_file():
        pytest.fail(f"PixelMed ({PIXELMED_JAR}) or java is not installed (Debian package pixelmed-apps)")
    cmd = [java, *JAVA_XML_LIMITS, "-cp", str(PIXELMED_JAR), "com.pixelmed.validate.DicomSRValidator", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    output = proc.stdout + proc.stderr
    verdict = _split("DicomSRValidator", path, output)
    if proc.returncode != 0 or "Exception" in output or "Root Template Validation Complete" not in output:
        pytest.fail(f"DicomSRValidator did not complete on {path} (exit {proc.returncode}):\n{output[-3000:]}")
    return verdict


def assert_valid(verdicts: Iterable[Verdict]) -> None:
    """Print every verdict (warnings listed in the test output); fail on any error."""
    failed = []
    for verdict in verdicts:
        print(verdict.report())
        if verdict.errors:
            failed.append(verdict.report())
    assert not failed, "\n".join(failed)
