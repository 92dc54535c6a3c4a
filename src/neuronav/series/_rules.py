"""The rule tables behind sequence identification: name keywords, ImageType values, contrast words.

Names are normalised first (lower case, ``t2*`` → ``t2star``, ``+C`` → ``pluscontrast``, ``w/o`` →
``without``) and split on every non-alphanumeric character, so a keyword only matches a whole token:
``ce`` matches ``ce-gadolinium`` but not ``sequence``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Sequence(StrEnum):
    """The MR sequences NeuroNav tells apart."""

    T1 = "T1"
    T1C = "T1c"
    T2 = "T2"
    FLAIR = "FLAIR"
    DWI = "DWI"
    ADC = "ADC"
    SWI = "SWI"
    OTHER = "other"


@dataclass(frozen=True)
class Rule:
    """A keyword pattern (on normalised text) and what it means."""

    pattern: re.Pattern[str]
    sequence: Sequence
    weight: float  # confidence when this rule alone decides
    meaning: str


def _rule(pattern: str, sequence: Sequence, weight: float, meaning: str) -> Rule:
    return Rule(re.compile(rf"\b(?:{pattern})\b"), sequence, weight, meaning)


S = Sequence

# Order matters: the first rule that matches a name decides. Specific before generic.
NAME_RULES: tuple[Rule, ...] = (
    _rule(
        r"localiser|localizer|loc|scout|survey|3 ?plane|tri ?pilot|calibration|cal|asset cal\w*|prescan",
        S.OTHER,
        0.9,
        "localizer / calibration scan",
    ),
    _rule(r"pha|phase|phs", S.OTHER, 0.9, "phase image"),
    _rule(r"eadc|expadc|exp|fa|colfa|tensor", S.OTHER, 0.85, "derived diffusion map other than ADC"),
    _rule(r"adc|dadc|apparent diffusion", S.ADC, 0.85, "apparent diffusion coefficient map"),
    _rule(
        r"swi\w*|swan|susceptibility|mag images|mip images sw|mnip|minip",
        S.SWI,
        0.85,
        "susceptibility-weighted imaging",
    ),
    _rule(r"dwi|dw|diff|diffusion|trace|tracew|dti|b\d{3,4}", S.DWI, 0.85, "diffusion-weighted"),
    _rule(r"perf|perfusion|dsc|dce|asl|pcasl|pasl", S.OTHER, 0.85, "perfusion"),
    _rule(r"tof|mra|angio|venogram|venography|mip", S.OTHER, 0.85, "angiography / projection"),
    _rule(r"spectro\w*|svs|csi|mrs", S.OTHER, 0.85, "spectroscopy"),
    _rule(r"bold|fmri|resting|rest", S.OTHER, 0.85, "functional MRI"),
    _rule(r"t1w? ?flair|flair t1w?", S.T1, 0.8, "GE T1 FLAIR: a T1-weighted inversion recovery, not a FLAIR"),
    _rule(r"flair|dark fluid|darkfluid", S.FLAIR, 0.8, "fluid-attenuated inversion recovery"),
    _rule(
        r"s?t1w?i?|t1(?:c|ce|gd|km|post|pre)|3dt1|mprage|mp2rage|bravo|fspgr|spgr|tfl3d|vibe",
        S.T1,
        0.8,
        "T1-weighted",
    ),
    _rule(r"tirm", S.FLAIR, 0.6, "Siemens turbo inversion recovery; FLAIR when TI is long"),
    _rule(r"stir", S.OTHER, 0.8, "short-TI inversion recovery (fat suppressed)"),
    _rule(r"pd|pdw|pdwi", S.OTHER, 0.75, "proton-density weighted"),
    _rule(
        r"t2star\w*|gre|hemo|mge|medic|merge|fiesta|ciss|dess",
        S.OTHER,
        0.75,
        "T2*-weighted / steady-state gradient echo",
    ),
    _rule(r"s?t2w?i?", S.T2, 0.8, "T2-weighted"),
    _rule(
        r"tse|fse|frfse|propeller|blade|haste|space|cube",
        S.T2,
        0.55,
        "turbo spin echo without a T1/PD label, usually T2-weighted",
    ),
    _rule(r"tfe|fl3d|flash", S.T1, 0.5, "T1-weighted gradient echo"),
)

# Siemens SequenceName values (e.g. '*tfl3d1_16ns', '*swi3d1r', '*ep_b1000t').
SEQUENCE_NAME_RULES: tuple[Rule, ...] = (
    Rule(re.compile(r"swi"), S.SWI, 0.7, "Siemens SWI sequence"),
    Rule(re.compile(r"ep_b\d*[1-9]\d*"), S.DWI, 0.7, "Siemens diffusion EPI"),
    Rule(re.compile(r"tfl3d"), S.T1, 0.6, "Siemens MPRAGE (turbo FLASH)"),
)

# ImageType values (DICOM (0008,0008)), checked in this order.
IMAGE_TYPE_RULES: tuple[tuple[frozenset[str], Sequence, str], ...] = (
    (frozenset({"LOCALIZER"}), S.OTHER, "localizer"),
    (frozenset({"P", "PHASE", "PHASE MAP", "REAL", "IMAGINARY"}), S.OTHER, "phase / complex image"),
    (frozenset({"FA", "EADC", "EXP", "TENSOR"}), S.OTHER, "derived diffusion map other than ADC"),
    (frozenset({"ADC"}), S.ADC, "apparent diffusion coefficient map"),
    (frozenset({"TRACEW", "TRACE", "DIFFUSION", "ISODWI"}), S.DWI, "diffusion-weighted"),
    (frozenset({"SWI", "MNIP"}), S.SWI, "susceptibility-weighted imaging"),
)
IMAGE_TYPE_WEIGHT = 0.85

CONTRAST = re.compile(
    r"\b(?:t1(?:c|ce|gd|km|post)|post|postcontrast|postgd|gd|gad|gado|gadolinium|ce|km|kontrast|"
    r"contrast|mdc|pluscontrast|withcontrast)\b"
)
PRE_CONTRAST = re.compile(r"\b(?:pre|precontrast|t1pre|nativ|native|without|noncontrast|wo)\b")


_SHOWN = {"pluscontrast": "+C", "withcontrast": "w/ C", "noncontrast": "w/o contrast", "t2star": "T2*"}


def shown(token: str) -> str:
    """A matched normalised token as a user would recognise it in the original name."""
    return _SHOWN.get(token.strip(), token.strip())


def normalise(text: str) -> str:
    """Lower-case ``text`` and reduce it to space-separated tokens, padded with one space each side."""
    s = text.lower().replace("t2*", " t2star ")
    s = re.sub(r"\b(?:non|no|without|w/o)[\s_-]*contrast\b|\bw/o\b", " noncontrast ", s)
    s = re.sub(r"\bw/\s*(?:c\b|$)", " withcontrast ", s)
    s = re.sub(r"\+\s*(?:c|gd|gad|contrast)\b|\bc\s*\+", " pluscontrast ", s)
    s = re.sub(r"[^a-z0-9]+", " ", s).strip()
    return f" {s} "
