"""Report lifecycle: preliminary (AI) → reviewed → final (signed) → amended; versions kept.

Library level: ``who`` and ``role`` are given by the caller (the service puts this behind its
authentication, and re-authenticates the signer). Only a radiologist edits, marks reviewed, signs and
amends. The status moves only by an explicit step: :func:`mark_reviewed` (preliminary → reviewed) or
:func:`sign`; an edit (a text, a finding, an included annotation) is recorded and leaves the status
as it is. A signature hashes the canonical JSON
of the report without its signature block (:func:`content_sha256`); :func:`verify_signature` checks
it. :class:`ReportStore` keeps every version as its own file and never overwrites one.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from neuronav.errors import LifecycleError, ReportError
from neuronav.findings import Findings
from neuronav.report.build import derive
from neuronav.report.model import (
    AMENDMENT_MEANING,
    REPORT_ID_PATTERN,
    REPORT_SCHEMA_VERSION,
    SIGNATURE_MEANING,
    Edit,
    KeySlices,
    ReaderMeasurement,
    Report,
    Signature,
    drop_later_defaults,
)

SIGNING_ROLES = frozenset({"radiologist"})
EDITABLE_TEXT = frozenset(
    {
        "/narrative/findings_text",
        "/narrative/impression",
        "/narrative/radiologist_comment",
        "/narrative/clinical_information",
    }
)
# the longest narrative text an edit may set: pages of prose, not a payload that makes every export crawl
MAX_NARRATIVE_CHARS = 20_000


def canonical_json(report: Report) -> bytes:
    """Sorted-key, compact UTF-8 JSON of the report without its signature block (and without the
    patient's identity, which a stored version never holds: it is attached when an output is written)."""
    exclude = {"signature", "patient"} & set(type(report).model_fields)
    data = report.model_dump(mode="json", exclude=exclude)
    drop_later_defaults(data)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_sha256(report: Report) -> str:
    return hashlib.sha256(canonical_json(report)).hexdigest()


def verify_signature(report: Report) -> bool:
    """True when the report is signed and its content is unchanged since the signature."""
    return report.signature is not None and report.signature.content_sha256 == content_sha256(report)


def _require_role(role: str, action: str) -> None:
    if role not in SIGNING_ROLES:
        raise LifecycleError(f"a {role or 'user without a role'} cannot {action} a report; only a radiologist can")


def _resolve(doc: Any, parts: list[str], path: str) -> tuple[Any, str | int]:
    for part in parts[:-1]:
        if isinstance(doc, list):
            if not part.isdigit() or int(part) >= len(doc):
                raise LifecycleError(f"no such field in the findings: {path}")
            doc = doc[int(part)]
        elif isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            raise LifecycleError(f"no such field in the findings: {path}")
    last = parts[-1]
    if isinstance(doc, list):
        if not last.isdigit() or int(last) >= len(doc):
            raise LifecycleError(f"no such field in the findings: {path}")
        return doc, int(last)
    if not isinstance(doc, dict) or last not in doc:
        raise LifecycleError(f"no such field in the findings: {path}")
    return doc, last


def _keep_shift_consistent(shift: dict[str, Any], edited: str) -> None:
    """The signed shift and its magnitude are one measurement: editing either sets the other."""
    try:
        value = float(shift[edited])
    except (TypeError, ValueError):
        return  # reported by the validation of the edited findings
    if edited == "shift_mm":
        shift["magnitude_mm"] = abs(value)
    else:
        sign = -1.0 if float(shift.get("shift_mm") or 0.0) < 0 else 1.0
        shift["shift_mm"] = sign * abs(value)


def edit(report: Report, changes: dict[str, Any], *, who: str, role: str, when: datetime | None = None) -> Report:
    """Apply a radiologist's edits; each is recorded (who, when, old, new); the status does not change.

    ``changes`` maps a JSON pointer to the new value: ``/narrative/impression`` (and the other
    narrative texts) or any field under ``/findings/`` (then every derived section, measurements and
    recommendations included, is recomputed from the edited findings).
    """
    _require_role(role, "edit")
    if report.signature is not None:
        raise LifecycleError(
            f"report {report.report_id} v{report.version} is signed ({report.status}); amend it to change it"
        )
    if not changes:
        raise LifecycleError("no edits given")
    when = when or datetime.now(UTC)
    data = report.model_dump(mode="json")
    findings_data = data["findings"]
    edits = list(report.edits)
    findings_changed = False
    for path, new in changes.items():
        if path in EDITABLE_TEXT:
            if not isinstance(new, str):
                raise LifecycleError(f"{path} must be text")
            if len(new) > MAX_NARRATIVE_CHARS:
                raise LifecycleError(f"{path} is longer than {MAX_NARRATIVE_CHARS} characters ({len(new)})")
            key = path.rsplit("/", 1)[1]
            old = data["narrative"][key]
            data["narrative"][key] = new
        elif path == "/reader_measurements/-":  # append one (JSON pointer "-": the end of the array)
            try:
                row = ReaderMeasurement.model_validate(new)
            except ValidationError as exc:
                raise LifecycleError(f"not a reader measurement: {exc.errors()[0]['msg']}") from exc
            old = None
            data["reader_measurements"].append(row.model_dump(mode="json"))
            data["schema_version"] = REPORT_SCHEMA_VERSION  # the field is 1.2's
        elif path.startswith("/findings/"):
            parts = path[len("/findings/") :].split("/")
            if parts[0] in ("schema_version", "created", "neuronav_version", "disclaimer", "timings_s"):
                raise LifecycleError(f"{path} is provenance and cannot be edited")
            parent, key_or_index = _resolve(findings_data, parts, path)
            old = parent[key_or_index]
            parent[key_or_index] = new
            findings_changed = True
            if parts[0] == "midline_shift" and key_or_index in ("shift_mm", "magnitude_mm"):
                _keep_shift_consistent(findings_data["midline_shift"], str(key_or_index))
        else:
            raise LifecycleError(
                f"{path} cannot be edited; edit the narrative ({', '.join(sorted(EDITABLE_TEXT))}) or /findings/…"
            )
        edits.append(Edit(who=who, role=role, when=when, path=path, old=old, new=new))
    try:
        findings = Findings.model_validate(findings_data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first["loc"])
        raise LifecycleError(f"the edited findings are not valid at /findings/{where}: {first['msg']}") from exc
    base = Report.model_validate({**data, "edits": [], "signature": None})
    if findings_changed:
        rewritten = {e.path.rsplit("/", 1)[1] for e in edits if e.path in EDITABLE_TEXT}
        base = derive(base, findings, keep_narrative=False)
        kept = {key: data["narrative"][key] for key in rewritten}  # the radiologist's words stay; the rest follows
        base = base.model_copy(update={"narrative": base.narrative.model_copy(update=kept)})
    return base.model_copy(update={"edits": edits, "status": report.status, "signature": None})


def _segmentation_summary(f: Findings) -> dict[str, Any]:
    seg = f.segmentation
    return {
        "version": seg.edited.version if seg.edited is not None else 1,
        "label_file": seg.label_file,
        "lesions": len(seg.lesions),
        "whole_tumour_ml": seg.volumes.whole_tumour_ml,
        "tumour_core_ml": seg.volumes.tumour_core_ml,
    }


def correct_segmentation(
    report: Report,
    findings: Findings,
    *,
    who: str,
    role: str,
    key_slices: KeySlices | None = None,
    when: datetime | None = None,
) -> Report:
    """The report measured from a corrected label map: ``findings`` (its segmentation, volumes, lesions and
    oedema measured again from the corrected map, :mod:`neuronav.workflow.segmentations`) replace the
    report's, every derived section is recomputed, the radiologist's own texts stay, and the correction
    is recorded as an edit of ``/findings/segmentation`` (old and new: version, lesions, volumes). An edit:
    the status does not move; a signed report is amended first. ``key_slices``: the key images placed
    again on the corrected map (the largest lesion may have changed)."""
    _require_role(role, "edit")
    if report.signature is not None:
        raise LifecycleError(
            f"report {report.report_id} v{report.version} is signed ({report.status}); amend it before "
            "correcting its segmentation"
        )
    when = when or datetime.now(UTC)
    rewritten = {e.path.rsplit("/", 1)[1] for e in report.edits if e.path in EDITABLE_TEXT}
    base = report
    if key_slices is not None:
        base = base.model_copy(update={"visual_data": base.visual_data.model_copy(update={"key_slices": key_slices})})
    base = derive(base, findings, keep_narrative=False)
    kept = {key: getattr(report.narrative, key) for key in rewritten}  # the radiologist's words stay
    visual = base.visual_data.model_copy(update={"segmentation_file": findings.segmentation.label_file})
    step = Edit(
        who=who,
        role=role,
        when=when,
        path="/findings/segmentation",
        old=_segmentation_summary(report.findings),
        new=_segmentation_summary(findings),
    )
    return base.model_copy(
        update={
            "narrative": base.narrative.model_copy(update=kept),
            "visual_data": visual,
            "edits": [*report.edits, step],
            "status": report.status,
            "signature": None,
            "schema_version": REPORT_SCHEMA_VERSION,  # findings 1.4's Segmentation.edited is report 1.3's
        }
    )


def mark_reviewed(report: Report, *, who: str, role: str, when: datetime | None = None) -> Report:
    """The explicit step preliminary → reviewed (recorded as an edit of ``/status``). An amendment stays
    ``amended`` until it is signed; a reviewed report cannot be marked again."""
    _require_role(role, "mark reviewed")
    if report.signature is not None:
        raise LifecycleError(f"report {report.report_id} v{report.version} is signed; amend it to change it")
    if report.status != "preliminary":
        raise LifecycleError(f"report {report.report_id} v{report.version} is {report.status}, not preliminary")
    step = Edit(who=who, role=role, when=when or datetime.now(UTC), path="/status", old=report.status, new="reviewed")
    return report.model_copy(update={"status": "reviewed", "edits": [*report.edits, step]})


def check_signable(report: Report, *, role: str) -> None:
    """Raise :class:`LifecycleError` when ``report`` cannot be signed by ``role`` (checked before asking
    the signer to re-authenticate)."""
    _require_role(role, "sign")
    if report.signature is not None:
        raise LifecycleError(f"report {report.report_id} v{report.version} is already signed; amend it to change it")


def sign(
    report: Report,
    *,
    who: str,
    role: str,
    when: datetime | None = None,
    reauthenticated_by: str | None = None,
    meaning: str | None = None,
) -> Report:
    """Sign: status final (or stays amended for an amendment); the content hash and the signature's
    manifestation (printed name, time, meaning) are recorded. ``reauthenticated_by`` says how the
    caller re-authenticated the signer (the service always does; a library caller may not)."""
    check_signable(report, role=role)
    if not who.strip():
        raise LifecycleError("a signature needs the signer's name")
    status = "amended" if report.status == "amended" else "final"
    signed = report.model_copy(update={"status": status})
    signature = Signature(
        signed_by=who,
        role=role,
        signed_at=when or datetime.now(UTC),
        content_sha256="",
        meaning=meaning or (AMENDMENT_MEANING if status == "amended" else SIGNATURE_MEANING),
        reauthenticated_by=reauthenticated_by,  # type: ignore[arg-type]
    )
    signature = signature.model_copy(update={"content_sha256": content_sha256(signed)})
    return signed.model_copy(update={"signature": signature})


def amend(report: Report, *, who: str, role: str, reason: str, when: datetime | None = None) -> Report:
    """A new, unsigned version of a signed report (status amended); edit it, then sign it."""
    _require_role(role, "amend")
    if report.signature is None:
        raise LifecycleError(f"report {report.report_id} v{report.version} is not signed yet; edit it instead")
    if not reason.strip():
        raise LifecycleError("an amendment needs a reason")
    return report.model_copy(
        update={
            "version": report.version + 1,
            "status": "amended",
            "supersedes_version": report.version,
            "amendment_reason": reason.strip(),
            "created": when or datetime.now(UTC),
            "edits": [],
            "signature": None,
        }
    )


class ReportStore:
    """Every version of every report, one JSON file each: ``root/<report_id>/v<version>.json``.

    An unsigned version is a draft and its file is replaced as it is edited; a signed version is never
    replaced (changing it takes an amendment: a new version). The newest file is the current state.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, report_id: str) -> Path:
        import re

        if not re.match(REPORT_ID_PATTERN, report_id):
            raise ReportError(f"not a report id: {report_id!r}")
        return self.root / report_id

    def save(self, report: Report) -> Path:
        from neuronav.report.json_report import report_json

        report = report.pseudonymous()  # identity is attached when an output is written, never stored
        folder = self._dir(report.report_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"v{report.version}.json"
        payload = report_json(report)
        tmp = folder / f".v{report.version}.json.partial"
        tmp.write_bytes(payload)
        try:
            try:
                os.link(tmp, path)  # fails if the version exists
            except FileExistsError:
                stored = Report.model_validate_json(path.read_bytes())
                if stored.signature is not None:
                    raise LifecycleError(
                        f"version {report.version} of {report.report_id} is signed and stored; it is never replaced"
                    ) from None
                os.replace(tmp, path)  # an unsigned version is a draft: its newer state replaces it
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def versions(self, report_id: str) -> list[int]:
        folder = self._dir(report_id)
        found = sorted(int(p.stem[1:]) for p in folder.glob("v*.json") if p.stem[1:].isdigit())
        if not found:
            raise ReportError(f"no report {report_id} in {self.root}")
        return found

    def load(self, report_id: str, version: int | None = None) -> Report:
        version = version or self.versions(report_id)[-1]
        path = self._dir(report_id) / f"v{version}.json"
        try:
            return Report.model_validate_json(path.read_bytes())
        except FileNotFoundError as exc:
            raise ReportError(f"no version {version} of report {report_id}") from exc
        except ValidationError as exc:
            raise ReportError(f"{path}: not a valid NeuroNav report ({exc.errors()[0]['msg']})") from exc
