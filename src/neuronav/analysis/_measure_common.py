"""Shared pieces of the measurement algorithms: their version, provenance and the CSF contrast."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from neuronav.findings import ProducedBy

# Bump when any measurement algorithm would give a different number for the same input.
ALGORITHM_VERSION = "1.0.0"

F32Array = npt.NDArray[np.float32]

# Sign of each channel in the CSF score: CSF is bright on T2, dark on FLAIR, T1 and T1c.
_CSF_SIGN = {"T2": 1.0, "FLAIR": -1.0, "T1": -1.0, "T1c": -1.0}


def produced_by(name: str) -> ProducedBy:
    return ProducedBy(name=f"neuronav.{name}", version=ALGORITHM_VERSION, kind="algorithm")


def csf_score(channels: Mapping[str, F32Array]) -> F32Array:
    """Mean of the signed z-scored channels (T2 +, FLAIR/T1/T1c −): high in CSF, low in tissue.

    On the preprocessed phantoms and the template, ventricular CSF scores ≈ 2.5–3, white matter
    ≈ −1.3, grey matter ≈ 0. Raises ValueError when none of the four sequences is present."""
    used = [(name, sign) for name, sign in _CSF_SIGN.items() if name in channels]
    if not used:
        raise ValueError("no T1, T1c, T2 or FLAIR channel to measure CSF on")
    acc = np.zeros(channels[used[0][0]].shape, dtype=np.float32)
    for name, sign in used:
        acc += np.float32(sign) * np.asarray(channels[name], dtype=np.float32)
    acc /= np.float32(len(used))
    return acc
