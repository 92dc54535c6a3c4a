"""The sequence of a NIfTI input: from an explicit option, else from the file name (BraTS, BIDS, free text)."""

from __future__ import annotations

import re
from pathlib import PurePath

from neuronav.errors import InputError
from neuronav.series._rules import CONTRAST, NAME_RULES, PRE_CONTRAST, Sequence, normalise, shown
from neuronav.series.identify import SequenceVerdict

S = Sequence

EXPLICIT: dict[str, Sequence] = {"t1": S.T1, "t1c": S.T1C, "t2": S.T2, "flair": S.FLAIR}

# The last '_'/'-'-separated part of the stem: BraTS 2018-21 (_t1, _t1ce, _t2, _flair), BraTS 2023
# (-t1n, -t1c, -t2w, -t2f), BIDS suffixes (_T1w, _T2w, _FLAIR, _dwi).
SUFFIXES: dict[str, Sequence] = {
    "t1": S.T1,
    "t1n": S.T1,
    "t1w": S.T1,
    "t1pre": S.T1,
    "t1c": S.T1C,
    "t1ce": S.T1C,
    "t1gd": S.T1C,
    "t1post": S.T1C,
    "t2": S.T2,
    "t2w": S.T2,
    "flair": S.FLAIR,
    "t2f": S.FLAIR,
    "t2flair": S.FLAIR,
    "dwi": S.DWI,
    "adc": S.ADC,
    "swi": S.SWI,
    "seg": S.OTHER,
    "mask": S.OTHER,
    "label": S.OTHER,
    "dseg": S.OTHER,
    "t2starw": S.OTHER,
}
_EXTENSIONS = re.compile(r"(\.nii(\.gz)?|\.mha|\.mhd|\.nrrd|\.mgz|\.gz)+$", re.IGNORECASE)


def sequence_from_filename(name: str, explicit: str | None = None) -> SequenceVerdict:
    """The sequence of a NIfTI file: ``explicit`` ('t1', 't1c', 't2', 'flair') wins, else the file name.

    Raises :class:`~neuronav.errors.InputError` for an ``explicit`` value outside those four.
    """
    if explicit is not None:
        seq = EXPLICIT.get(explicit.strip().lower())
        if seq is None:
            allowed = ", ".join(repr(k) for k in EXPLICIT)
            raise InputError(f"unknown sequence {explicit!r}; allowed values are {allowed}", path=name or None)
        return SequenceVerdict(seq, 1.0, (f"sequence given explicitly as {explicit!r}",))

    base = PurePath(name).name
    stem = _EXTENSIONS.sub("", base)
    suffix = re.split(r"[_\-.]", stem)[-1].lower()
    seq = SUFFIXES.get(suffix)
    if seq is not None:
        reasons = [f"file name {base!r} ends in {suffix!r} (BraTS / BIDS naming)"]
        ce = re.search(r"(?:^|_)ce-([A-Za-z0-9]+)", stem)  # BIDS contrast-enhancement entity
        if seq is S.T1 and ce:
            seq = S.T1C
            reasons.append(f"BIDS entity 'ce-{ce.group(1)}': post-contrast")
        return SequenceVerdict(seq, 0.9, tuple(reasons))

    text = normalise(stem)
    for rule in NAME_RULES:
        m = rule.pattern.search(text)
        if m:
            seq, reasons = rule.sequence, [f"file name {base!r} contains {shown(m.group(0))!r} ({rule.meaning})"]
            post = CONTRAST.search(text)
            if seq is S.T1 and post and not PRE_CONTRAST.search(text):
                seq = S.T1C
                reasons.append(f"file name contains {shown(post.group(0))!r}: post-contrast")
            return SequenceVerdict(seq, round(rule.weight - 0.1, 2), tuple(reasons))

    return SequenceVerdict(
        S.OTHER,
        0.1,
        (
            f"file name {base!r} names no known sequence; give it explicitly as one of "
            + ", ".join(repr(k) for k in EXPLICIT),
        ),
    )
