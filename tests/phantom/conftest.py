"""Phantom studies shared by the tests of this folder (generated once per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuronav.phantom import PhantomStudy, generate_study

GLIOMA_SEED = 11


@pytest.fixture(scope="session")
def glioma(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    """A glioma with haemorrhage, clinical geometry, written as NIfTI."""
    out: Path = tmp_path_factory.mktemp("glioma")
    return generate_study(out, seed=GLIOMA_SEED, lesion="glioma", fmt="nifti", haemorrhage=True)


@pytest.fixture(scope="session")
def meningioma(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("men"), seed=5, lesion="meningioma", fmt="nifti", haemorrhage=False)


@pytest.fixture(scope="session")
def metastasis(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("met"), seed=2, lesion="metastasis", fmt="nifti")


@pytest.fixture(scope="session")
def normal(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("none"), seed=4, lesion="none", fmt="nifti")


@pytest.fixture(scope="session")
def varied_dicom(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    """Sagittal, axial, oblique and coronal multi-frame DICOM series, rotated head, meningioma."""
    return generate_study(
        tmp_path_factory.mktemp("varied"), seed=42, lesion="meningioma", fmt="dicom", profile="varied"
    )
