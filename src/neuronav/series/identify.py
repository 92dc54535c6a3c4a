"""Identify the MR sequence of a DICOM series from its names, ImageType, timing and contrast tags.

Evidence, strongest first: ImageType values (ADC, phase, localizer), SeriesDescription, ProtocolName,
Siemens SequenceName keywords, then physics (b-value, TI/TR/TE). Physics confirms a name (higher
confidence), overrules it where the physics is unambiguous (a "FLAIR" with TI 800 ms and TE 10 ms is a
GE T1 FLAIR, a T1), or stands alone with lower confidence when the names say nothing. A T1 becomes T1c
on a ContrastBolusAgent or a post-contrast word in its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neuronav.ingest.model import Inventory, SeriesMetadata
from neuronav.series._rules import (
    CONTRAST,
    IMAGE_TYPE_RULES,
    IMAGE_TYPE_WEIGHT,
    NAME_RULES,
    PRE_CONTRAST,
    SEQUENCE_NAME_RULES,
    Rule,
    Sequence,
    normalise,
    shown,
)

S = Sequence


@dataclass(frozen=True)
class SequenceVerdict:
    """Which sequence a series is, how sure we are (0..1), and the evidence in words."""

    sequence: Sequence
    confidence: float
    reasons: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within 0..1, got {self.confidence}")
        if not self.reasons:
            raise ValueError("a SequenceVerdict needs at least one reason")

    def to_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence.value, "confidence": self.confidence, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class _Evidence:
    sequence: Sequence
    weight: float
    reason: str
    source: str = "physics"
    overrules: frozenset[Sequence] = field(default_factory=frozenset)


def _agree(a: Sequence, b: Sequence) -> bool:
    """Same sequence, or ADC (a map computed from a DWI) and DWI."""
    return a == b or {a, b} == {S.ADC, S.DWI}


def _uninformative(name: Sequence, phys: Sequence) -> bool:
    """Physics that neither confirms nor contradicts the name: TR/TE of an EPI, a susceptibility scan or
    a localizer do not map onto T1/T2 weighting, and a FLAIR whose TI is missing still times like a T2."""
    return name in (S.DWI, S.ADC, S.SWI, S.OTHER) or (name, phys) == (S.FLAIR, S.T2)


def _match(source: str, value: str, rules: tuple[Rule, ...], text: str) -> _Evidence | None:
    """The first rule matching ``text`` (derived from ``value``), naming the field and the matched words."""
    for rule in rules:
        m = rule.pattern.search(text)
        if m:
            reason = f"{source} {value!r} contains {shown(m.group(0))!r} ({rule.meaning})"
            return _Evidence(rule.sequence, rule.weight, reason, source)
    return None


def _image_type(meta: SeriesMetadata) -> _Evidence | None:
    values = {v.strip().upper() for v in meta.image_type}
    for keys, seq, meaning in IMAGE_TYPE_RULES:
        hit = sorted(values & keys)
        if hit:
            listed = "\\".join(meta.image_type)
            reason = f"ImageType '{listed}' contains {', '.join(map(repr, hit))} ({meaning})"
            return _Evidence(seq, IMAGE_TYPE_WEIGHT, reason, "ImageType")
    return None


def _ms(x: float) -> str:
    return f"{x:g} ms"


def _physics(meta: SeriesMetadata) -> _Evidence | None:
    """What b-value and TI/TR/TE alone say; ``overrules`` lists the names this physics may contradict."""
    b, tr, te, ti = meta.diffusion_b_value, meta.repetition_time, meta.echo_time, meta.inversion_time
    if b is not None and b > 0:
        return _Evidence(S.DWI, 0.7, f"b-value {b:g} s/mm²: diffusion-weighted", overrules=frozenset({S.T1, S.T2}))
    if "EP" in meta.scanning_sequence.upper():
        return None  # echo-planar timing says little about T1/T2 weighting
    if ti is not None and ti > 0:
        if ti >= 1400 and tr is not None and tr >= 4000:
            return _Evidence(
                S.FLAIR,
                0.7,
                f"TI {_ms(ti)} with TR {_ms(tr)}: fluid-attenuated inversion recovery",
                overrules=frozenset({S.T2}),
            )
        if 300 <= ti <= 1300 and te is not None and te < 30:
            return _Evidence(
                S.T1,
                0.65,
                f"TI {_ms(ti)} with TE {_ms(te)}: T1-weighted inversion recovery (MPRAGE / BRAVO / T1 FLAIR)",
                overrules=frozenset({S.FLAIR}),
            )
        if ti <= 250:
            return _Evidence(
                S.OTHER,
                0.45,
                f"TI {_ms(ti)}: short-TI inversion recovery (STIR, fat suppressed)",
                overrules=frozenset({S.FLAIR}),
            )
        return None
    if tr is None or te is None:
        return None
    timing = f"TR {_ms(tr)}, TE {_ms(te)}"
    if tr < 200:  # only gradient echoes repeat this fast
        if te < 15:
            return _Evidence(S.T1, 0.55, f"{timing}: T1-weighted gradient echo")
        return _Evidence(S.OTHER, 0.4, f"{timing}: T2*-weighted gradient echo")
    if tr < 1000 and te < 30:
        return _Evidence(S.T1, 0.55, f"{timing}: T1-weighted (short TR, short TE)")
    if tr >= 2000 and te >= 60:
        return _Evidence(S.T2, 0.55, f"{timing}: T2-weighted (long TR, long TE, no inversion)")
    if tr >= 1500 and te < 40:
        return _Evidence(S.OTHER, 0.4, f"{timing}: proton-density weighted (long TR, short TE)")
    return None


def _from_names(meta: SeriesMetadata) -> tuple[_Evidence | None, float, list[str], bool]:
    """Name evidence: the deciding one, a confidence adjustment, extra reasons, and whether the
    ProtocolName is series-level (it matched a rule), so its contrast words count."""
    desc = _match("SeriesDescription", meta.series_description, NAME_RULES, normalise(meta.series_description))
    proto = None
    if meta.protocol_name.strip().lower() != meta.series_description.strip().lower():
        proto = _match("ProtocolName", meta.protocol_name, NAME_RULES, normalise(meta.protocol_name))
    seqname = _match("SequenceName", meta.sequence_name, SEQUENCE_NAME_RULES, meta.sequence_name.lower())
    candidates = [e for e in (_image_type(meta), desc, proto, seqname) if e is not None]
    if not candidates:
        return None, 0.0, [], False
    main, adjust, extra = candidates[0], 0.0, []
    for other in candidates[1:]:
        if _agree(other.sequence, main.sequence):
            adjust += 0.05
            extra.append(other.reason)
        elif other is proto:
            adjust -= 0.15 if main is desc else 0.0
            extra.append(f"{other.reason}, but {main.source} says {main.sequence.value} and is taken as more specific")
    return main, adjust, extra, proto is not None


def _contrast(meta: SeriesMetadata, use_protocol: bool) -> tuple[bool | None, list[str]]:
    """True (post-contrast), False (explicitly pre-contrast), None (no word either way), with reasons."""
    fields = [("SeriesDescription", meta.series_description)]
    if use_protocol:
        fields.append(("ProtocolName", meta.protocol_name))
    post = [
        f"{f} {v!r} contains {shown(m.group(0))!r}: post-contrast"
        for f, v in fields
        if (m := CONTRAST.search(normalise(v)))
    ]
    pre = [
        f"{f} {v!r} contains {shown(m.group(0))!r}: pre-contrast"
        for f, v in fields
        if (m := PRE_CONTRAST.search(normalise(v)))
    ]
    if post:
        return True, post
    if pre:
        return False, pre
    return None, []


def _clip(x: float) -> float:
    return round(min(0.97, max(0.05, x)), 2)


def identify_sequence(meta: SeriesMetadata) -> SequenceVerdict:
    """Identify the sequence of one series from its metadata; every verdict says why."""
    if meta.modality and meta.modality.strip().upper() != "MR":
        return SequenceVerdict(S.OTHER, 0.99, (f"Modality {meta.modality!r} is not MR",))

    name, adjust, reasons, proto_counts = _from_names(meta)
    phys = _physics(meta)
    if name is None and phys is not None:
        seq, conf, reasons = phys.sequence, phys.weight, [phys.reason, "no identifying name: judged on physics alone"]
    elif name is None:
        return SequenceVerdict(
            S.OTHER, 0.3, ("no SeriesDescription, ProtocolName, ImageType or timing that identifies the sequence",)
        )
    elif phys is None:
        seq, conf, reasons = name.sequence, name.weight + adjust, [name.reason, *reasons]
    elif _agree(name.sequence, phys.sequence) and name.sequence is not S.OTHER:  # two 'other's prove nothing
        seq, conf, reasons = name.sequence, name.weight + 0.15 + adjust, [name.reason, *reasons, phys.reason]
    elif name.sequence in phys.overrules:
        seq, conf = phys.sequence, 0.75
        reasons = [name.reason, *reasons, f"{phys.reason}; this overrules the name's {name.sequence.value}"]
    elif _uninformative(name.sequence, phys.sequence):
        seq, conf, reasons = name.sequence, name.weight + adjust, [name.reason, *reasons]
    else:
        seq, conf = name.sequence, name.weight - 0.2 + adjust
        reasons = [name.reason, *reasons, f"{phys.reason}, which disagrees: the name is followed"]

    if seq is S.T1:
        post, words = _contrast(meta, proto_counts)
        agent = meta.contrast_bolus_agent.strip()
        if post:
            seq = S.T1C
            reasons += words
            if meta.has_contrast:
                reasons.append(f"ContrastBolusAgent {agent!r} present: post-contrast")
        elif meta.has_contrast and post is False:
            conf -= 0.15
            reasons += [
                *words,
                f"ContrastBolusAgent {agent!r} is set, but the name says pre-contrast: the name is followed",
            ]
        elif meta.has_contrast:
            seq = S.T1C
            reasons.append(f"ContrastBolusAgent {agent!r} present: post-contrast")
        else:
            reasons += words
    return SequenceVerdict(seq, _clip(conf), tuple(reasons))


def identify_inventory(inv: Inventory) -> None:
    """Set ``series.sequence`` to a :class:`SequenceVerdict` for every series in ``inv``."""
    for series in inv.all_series:
        series.sequence = identify_sequence(series.metadata)
