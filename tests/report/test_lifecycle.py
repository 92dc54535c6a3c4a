"""Report lifecycle: preliminary → reviewed → final (signed, hashed) → amended; versions kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from neuronav.errors import LifecycleError, ReportError
from neuronav.findings import Findings, SegmentationEdit
from neuronav.report.build import build_report
from neuronav.report.json_report import report_json
from neuronav.report.lifecycle import (
    ReportStore,
    amend,
    canonical_json,
    content_sha256,
    correct_segmentation,
    edit,
    mark_reviewed,
    sign,
    verify_signature,
)
from neuronav.report.model import AMENDMENT_MEANING, SIGNATURE_MEANING, Report
from tests.analysis.findings_factory import make_findings

WHEN = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def prelim() -> Report:
    return build_report(make_findings(enhancing_ml=10.0, whole_tumour_ml=30.0))


def test_edit_records_who_when_and_values(prelim: Report) -> None:
    r = edit(prelim, {"/narrative/impression": "Left frontal glioma."}, who="Dr A", role="radiologist", when=WHEN)
    assert r.status == "preliminary"  # an edit never moves the status
    assert r.narrative.impression == "Left frontal glioma."
    (e,) = r.edits
    assert (e.who, e.role, e.when, e.path, e.new) == (
        "Dr A",
        "radiologist",
        WHEN,
        "/narrative/impression",
        r.narrative.impression,
    )
    assert e.old == prelim.narrative.impression


def test_editing_findings_recomputes_every_derived_section(prelim: Report) -> None:
    r = edit(prelim, {"/findings/segmentation/volumes/whole_tumour_ml": 42.5}, who="Dr A", role="radiologist")
    assert r.findings.segmentation.volumes.whole_tumour_ml == 42.5
    assert r.ai_findings.primary_detection.volume_ml == 42.5
    assert {m.key: m.value for m in r.measurements}["whole_tumour_volume"] == 42.5
    assert "42.5 mL" in r.narrative.findings_text  # generated text follows while nobody rewrote it


def test_radiologist_text_survives_later_findings_edits(prelim: Report) -> None:
    r = edit(prelim, {"/narrative/findings_text": "My own words."}, who="Dr A", role="radiologist")
    r = edit(r, {"/findings/midline_shift/magnitude_mm": 7.0}, who="Dr A", role="radiologist")
    assert r.narrative.findings_text == "My own words."
    assert len(r.edits) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"/findings/segmentation/volumes/whole_tumour_ml": "lots"}, "not valid"),
        ({"/findings/nope": 1}, "no such field"),
        ({"/findings/created": "2020-01-01"}, "provenance"),
        ({"/status": "final"}, "cannot be edited"),
        ({"/narrative/impression": 3}, "must be text"),
        ({}, "no edits"),
    ],
)
def test_bad_edits_are_refused(prelim: Report, changes: dict[str, object], message: str) -> None:
    with pytest.raises(LifecycleError, match=message):
        edit(prelim, changes, who="Dr A", role="radiologist")


@pytest.mark.parametrize("role", ["technician", "neurologist", "admin", ""])
def test_only_a_radiologist_edits_signs_or_amends(prelim: Report, role: str) -> None:
    with pytest.raises(LifecycleError, match="only a radiologist"):
        edit(prelim, {"/narrative/impression": "x"}, who="X", role=role)
    with pytest.raises(LifecycleError, match="only a radiologist"):
        sign(prelim, who="X", role=role)
    signed = sign(prelim, who="Dr A", role="radiologist")
    with pytest.raises(LifecycleError, match="only a radiologist"):
        amend(signed, who="X", role=role, reason="r")


def test_signature_hashes_the_content(prelim: Report) -> None:
    final = sign(prelim, who="Dr A", role="radiologist", when=WHEN)
    assert final.status == "final" and final.signature is not None
    assert final.signature.content_sha256 == content_sha256(final)
    assert verify_signature(final)
    tampered = final.model_copy(update={"narrative": final.narrative.model_copy(update={"impression": "changed"})})
    assert not verify_signature(tampered)
    assert not verify_signature(prelim)
    with pytest.raises(LifecycleError, match="final"):
        edit(final, {"/narrative/impression": "x"}, who="Dr A", role="radiologist")
    with pytest.raises(LifecycleError, match="already signed"):
        sign(final, who="Dr A", role="radiologist")


def test_amendment_is_a_new_signed_version(prelim: Report) -> None:
    v1 = sign(prelim, who="Dr A", role="radiologist")
    with pytest.raises(LifecycleError, match="reason"):
        amend(v1, who="Dr B", role="radiologist", reason="  ")
    with pytest.raises(LifecycleError, match="not signed"):
        amend(prelim, who="Dr B", role="radiologist", reason="typo")
    draft = amend(v1, who="Dr B", role="radiologist", reason="laterality corrected")
    assert (draft.version, draft.status, draft.supersedes_version, draft.signature) == (2, "amended", 1, None)
    draft = edit(draft, {"/narrative/impression": "Right frontal glioma."}, who="Dr B", role="radiologist")
    assert draft.status == "amended"
    v2 = sign(draft, who="Dr B", role="radiologist")
    assert v2.status == "amended" and verify_signature(v2) and v2.report_id == v1.report_id
    assert v2.amendment_reason == "laterality corrected"


def test_store_keeps_every_stage_and_never_replaces_a_signed_version(prelim: Report, tmp_path: Path) -> None:
    store = ReportStore(tmp_path)
    store.save(prelim)  # preliminary, then reviewed, then final: one version, the draft replaced each time
    edited = edit(prelim, {"/narrative/impression": "Glioma."}, who="Dr A", role="radiologist")
    reviewed = mark_reviewed(edited, who="Dr A", role="radiologist")
    store.save(reviewed)
    assert store.load(prelim.report_id).status == "reviewed"
    v1 = sign(reviewed, who="Dr A", role="radiologist")
    store.save(v1)
    with pytest.raises(LifecycleError, match="signed and stored"):
        store.save(v1)
    with pytest.raises(LifecycleError, match="signed and stored"):
        store.save(reviewed)
    v2 = sign(amend(v1, who="Dr A", role="radiologist", reason="r"), who="Dr A", role="radiologist")
    store.save(v2)
    assert store.versions(v1.report_id) == [1, 2]
    assert store.load(v1.report_id) == v2
    assert store.load(v1.report_id, 1) == v1
    assert verify_signature(store.load(v1.report_id, 1))  # the hash survives the JSON round trip
    stored = json.loads((tmp_path / v1.report_id / "v1.json").read_text())
    assert stored["status"] == "final" and stored["version"] == 1
    assert not list(tmp_path.rglob("*.partial"))
    with pytest.raises(ReportError, match="no version 7"):
        store.load(v1.report_id, 7)
    with pytest.raises(ReportError, match="not a report id"):
        store.load("../../etc/passwd")


def test_lesion_text_in_visual_data_follows_edited_findings(report: Report) -> None:
    r = edit(report, {"/findings/segmentation/lesions/0/core_ml": 99.5}, who="Dr A", role="radiologist")
    assert r.visual_data.key_slices == report.visual_data.key_slices
    assert all("99.5 mL" in a.text for a in r.visual_data.slice_annotations)
    assert r.visual_data.slice_annotations
    assert {m.key: m.value for m in r.measurements}["lesion1_core_volume"] == 99.5


def test_a_signed_amendment_cannot_be_edited(prelim: Report) -> None:
    v2 = sign(
        amend(sign(prelim, who="Dr A", role="radiologist"), who="Dr A", role="radiologist", reason="r"),
        who="Dr A",
        role="radiologist",
    )
    with pytest.raises(LifecycleError, match="signed"):
        edit(v2, {"/narrative/impression": "x"}, who="Dr A", role="radiologist")


def test_midline_shift_and_its_magnitude_stay_one_measurement(prelim: Report) -> None:
    r = edit(prelim, {"/findings/midline_shift/shift_mm": -7.2}, who="Dr A", role="radiologist")
    assert r.findings.midline_shift.magnitude_mm == 7.2
    assert any(x.rule_id == "R-MASS-EFFECT" and x.urgency == "urgent" for x in r.recommendations)
    assert "7.2 mm" in next(i.statement for i in r.ai_findings.anatomical_review if i.structure == "Midline")
    r = edit(r, {"/findings/midline_shift/magnitude_mm": 3.0}, who="Dr A", role="radiologist")
    assert r.findings.midline_shift.shift_mm == -3.0


def test_only_the_rewritten_narrative_field_is_kept(prelim: Report) -> None:
    r = edit(prelim, {"/narrative/impression": "My impression."}, who="Dr A", role="radiologist")
    r = edit(r, {"/findings/segmentation/volumes/whole_tumour_ml": 55.5}, who="Dr A", role="radiologist")
    assert r.narrative.impression == "My impression."
    assert "55.5 mL" in r.narrative.findings_text  # not rewritten by hand: follows the findings


def test_status_moves_only_by_mark_reviewed_or_signature(prelim: Report) -> None:
    r = edit(prelim, {"/findings/midline_shift/magnitude_mm": 7.0}, who="Dr A", role="radiologist")
    r = edit(r, {"/narrative/radiologist_comment": "Annotation included."}, who="Dr A", role="radiologist")
    assert r.status == "preliminary"
    reviewed = mark_reviewed(r, who="Dr A", role="radiologist", when=WHEN)
    assert reviewed.status == "reviewed"
    assert (reviewed.edits[-1].path, reviewed.edits[-1].old, reviewed.edits[-1].new) == (
        "/status",
        "preliminary",
        "reviewed",
    )
    assert edit(reviewed, {"/narrative/impression": "x"}, who="Dr A", role="radiologist").status == "reviewed"
    with pytest.raises(LifecycleError, match="not preliminary"):
        mark_reviewed(reviewed, who="Dr A", role="radiologist")
    with pytest.raises(LifecycleError, match="only a radiologist"):
        mark_reviewed(r, who="T", role="technician")
    final = sign(reviewed, who="Dr A", role="radiologist")
    with pytest.raises(LifecycleError, match="signed"):
        mark_reviewed(final, who="Dr A", role="radiologist")


def test_signature_manifestation_has_name_time_and_meaning(prelim: Report) -> None:
    final = sign(prelim, who="Dr Ada Lovelace", role="radiologist", when=WHEN, reauthenticated_by="password")
    assert final.signature is not None
    assert (final.signature.signed_by, final.signature.signed_at, final.signature.meaning) == (
        "Dr Ada Lovelace",
        WHEN,
        SIGNATURE_MEANING,
    )
    assert final.signature.reauthenticated_by == "password"
    v2 = sign(amend(final, who="Dr B", role="radiologist", reason="side corrected"), who="Dr B", role="radiologist")
    assert v2.signature is not None and v2.signature.meaning == AMENDMENT_MEANING
    with pytest.raises(LifecycleError, match="name"):
        sign(prelim, who=" ", role="radiologist")


def test_a_report_signed_before_the_lesion_fields_existed_still_verifies(prelim: Report) -> None:
    """Fields the findings gained later (schema 1.3) are left out of the signed content while they hold
    their default: a stored report from before them verifies."""
    final = sign(prelim, who="Dr A", role="radiologist", when=WHEN)
    data = json.loads(final.model_dump_json())
    for lesion in data["findings"]["segmentation"]["lesions"]:
        for key in ("core_ml", "enhancing_ml", "oedema_ml", "enhancing_max_diameter_mm", "oedema_max_diameter_mm"):
            lesion.pop(key, None)
        lesion.pop("satellites", None)
    data["findings"]["segmentation"].pop("oedema_islands_ml", None)
    old = Report.model_validate(data)
    assert canonical_json(old) == canonical_json(final)
    assert verify_signature(old)


def test_a_stored_version_never_holds_the_patients_identity(prelim: Report, tmp_path: Path) -> None:
    from neuronav.report.model import Patient

    patient = Patient(name="Doe^Jane", mrn="MRN-7", mrn_issuer="HOSP", birth_date="19700101")
    store = ReportStore(tmp_path)
    store.save(prelim.identified(patient))
    text = (tmp_path / prelim.report_id / "v1.json").read_text()
    assert "Doe^Jane" not in text and "MRN-7" not in text
    assert store.load(prelim.report_id).patient is None
    assert store.load(prelim.report_id) == prelim


def _corrected(report: Report, whole_ml: float) -> Findings:
    seg = report.findings.segmentation
    edited = SegmentationEdit(version=2, parent_version=1, edited_by="Dr Grey", role="radiologist", edited_at=WHEN)
    volumes = seg.volumes.model_copy(update={"whole_tumour_ml": whole_ml})
    return report.findings.model_copy(
        update={
            "segmentation": seg.model_copy(
                update={"volumes": volumes, "label_file": "segmentation-v2.nii.gz", "edited": edited}
            )
        }
    )


def test_a_corrected_segmentation_is_an_edit_the_status_stays_and_a_signed_report_is_amended_first(
    prelim: Report,
) -> None:
    kept = edit(prelim, {"/narrative/impression": "My words."}, who="Dr Grey", role="radiologist", when=WHEN)
    reviewed = mark_reviewed(kept, who="Dr Grey", role="radiologist", when=WHEN)
    out = correct_segmentation(reviewed, _corrected(reviewed, 12.5), who="Dr Grey", role="radiologist", when=WHEN)
    assert out.status == "reviewed" and out.version == reviewed.version and out.schema_version == "1.3"
    assert out.edits[-1].path == "/findings/segmentation" and out.edits[-1].who == "Dr Grey"
    assert out.edits[-1].old["version"] == 1 and out.edits[-1].new["version"] == 2
    assert {m.key: m.value for m in out.measurements}["whole_tumour_volume"] == 12.5
    assert out.visual_data.segmentation_file == "segmentation-v2.nii.gz"
    assert out.narrative.impression == "My words."  # the radiologist's text stays
    assert "Segmentation corrected by Dr Grey" in out.narrative.findings_text
    Report.model_validate_json(report_json(out))  # valid against its published schema (1.3)
    with pytest.raises(LifecycleError, match="only a radiologist"):
        correct_segmentation(prelim, _corrected(prelim, 1.0), who="T", role="technician")
    signed = sign(out, who="Dr Grey", role="radiologist", when=WHEN)
    with pytest.raises(LifecycleError, match="amend it before correcting"):
        correct_segmentation(signed, _corrected(signed, 1.0), who="Dr Grey", role="radiologist")
    assert verify_signature(signed)
