"""The role → permission matrix against a spec written out here, break-glass, object rules, inactive accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from neuronav.security.errors import PermissionDenied
from neuronav.security.permissions import (
    BREAKGLASS_PERMISSIONS,
    PATIENT_DATA_PERMISSIONS,
    ROLE_PERMISSIONS,
    AnnotationObject,
    BreakGlass,
    Permission,
    ReportObject,
    Role,
    StudyObject,
    object_access,
    open_breakglass,
    permissions_for,
    report_read_permission,
    require,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

# The spec, from the service issue. Columns: technician, radiologist, neurologist, admin.
# "x" = granted by the role; "b" = only through an open break-glass; "." = never.
SPEC = """
permission               tech rad  neuro admin
study:upload              x    .    .     .
study:status              x    x    .     b
study:images              x    x    x     b
study:list                .    x    x     b
study:read                .    x    x     b
study:export_deidentified .    x    x     b
analysis:start            .    x    .     .
analysis:read             .    x    .     b
report:read_preliminary   .    x    .     b
report:read_final         .    x    x     b
report:edit               .    x    .     .
report:sign               .    x    .     .
report:amend              .    x    .     .
report:export             .    x    .     .
annotation:create         .    x    x     .
annotation:read           .    x    x     b
user:manage               .    .    .     x
user:verify               .    .    .     x
settings:manage           .    .    .     x
audit:read                .    .    .     x
breakglass:use            .    .    .     x
"""
ROLES = [Role.TECHNICIAN, Role.RADIOLOGIST, Role.NEUROLOGIST, Role.ADMIN]


def _spec() -> dict[tuple[Role, Permission], str]:
    table: dict[tuple[Role, Permission], str] = {}
    for line in SPEC.strip().splitlines()[1:]:
        name, *marks = line.split()
        for role, mark in zip(ROLES, marks, strict=True):
            table[(role, Permission(name))] = mark
    return table


MATRIX = _spec()
CELLS = sorted(MATRIX.items(), key=lambda kv: (kv[0][0].value, kv[0][1].value))


def test_spec_covers_every_role_and_every_permission() -> None:
    assert {p for _, p in MATRIX} == set(Permission) and {r for r, _ in MATRIX} == set(Role)
    assert len(MATRIX) == len(Role) * len(Permission)


@pytest.mark.parametrize(("cell", "mark"), CELLS, ids=[f"{r.value}-{p.value}" for (r, p), _ in CELLS])
def test_matrix_cell(cell: tuple[Role, Permission], mark: str) -> None:
    role, permission = cell
    if mark == "x":
        grant = require(role, permission, active=True, verified=True)
        assert grant.via == "role" and not grant.audit_required
    else:
        with pytest.raises(PermissionDenied):
            require(role, permission, active=True, verified=True)
    bg = BreakGlass("bg1", "u1", role, "patient in resus, CT/MR", T0, T0 + timedelta(minutes=60))
    if mark == "b":
        grant = require(role, permission, active=True, verified=True, breakglass=bg, user_id="u1", now=T0)
        assert grant.via == "breakglass" and grant.audit_required
    elif mark == ".":
        with pytest.raises(PermissionDenied):
            require(role, permission, active=True, verified=True, breakglass=bg, user_id="u1", now=T0)


def test_matrix_data_equals_the_spec() -> None:
    for role in Role:
        assert permissions_for(role) == {p for (r, p), m in MATRIX.items() if r == role and m == "x"}


def test_admin_holds_no_patient_data_permission_by_role() -> None:
    assert not ROLE_PERMISSIONS[Role.ADMIN] & PATIENT_DATA_PERMISSIONS
    # a technician follows their uploads and views their images (quality), nothing more of patient data
    assert ROLE_PERMISSIONS[Role.TECHNICIAN] & PATIENT_DATA_PERMISSIONS == {
        Permission.STUDY_STATUS,
        Permission.STUDY_IMAGES,
    }
    assert BREAKGLASS_PERMISSIONS <= PATIENT_DATA_PERMISSIONS


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("active", "verified"), [(False, True), (True, False), (False, False)])
def test_inactive_or_unverified_accounts_are_denied_everything(role: Role, active: bool, verified: bool) -> None:
    bg = BreakGlass("bg1", "u1", role, "a sufficiently long reason", T0, T0 + timedelta(minutes=60))
    for permission in Permission:
        with pytest.raises(PermissionDenied, match="not active or not yet verified"):
            require(role, permission, active=active, verified=verified, breakglass=bg, user_id="u1", now=T0)


def test_unknown_role_is_denied_and_unknown_permission_is_a_bug() -> None:
    with pytest.raises(PermissionDenied):
        require("superuser", Permission.STUDY_READ, active=True, verified=True)
    with pytest.raises(ValueError):
        require(Role.ADMIN, "study:delete", active=True, verified=True)


def test_strings_work_as_well_as_enums() -> None:
    assert require("radiologist", "report:sign", active=True, verified=True).permission is Permission.REPORT_SIGN


# -- break-glass ----------------------------------------------------------------------------------


def _open(reason: str = "Patient unconscious in ED, neurosurgery asks", **kw: object) -> BreakGlass:
    args: dict[str, object] = {"user_id": "a1", "role": Role.ADMIN, "active": True, "verified": True, "now": T0}
    args.update(kw)
    return open_breakglass(reason=reason, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("reason", ["", "   ", "urgent", "too   short", "\n\tnine 9 9\n"])
def test_breakglass_needs_a_reason_of_ten_characters(reason: str) -> None:
    with pytest.raises(PermissionDenied, match="reason"):
        _open(reason)


def test_breakglass_records_who_why_and_when() -> None:
    bg = _open("  Patient   unconscious in ED ")
    assert bg.reason == "Patient unconscious in ED" and bg.user_id == "a1" and bg.role is Role.ADMIN
    assert bg.expires_at - bg.opened_at == timedelta(minutes=60) and len(bg.breakglass_id) == 16
    event = bg.audit_event()
    assert event["event"] == "breakglass.open" and event["reason"] == bg.reason and event["user_id"] == "a1"


def test_only_roles_with_breakglass_use_can_open_one() -> None:
    for role in (Role.TECHNICIAN, Role.RADIOLOGIST, Role.NEUROLOGIST):
        with pytest.raises(PermissionDenied):
            _open(role=role)
    with pytest.raises(PermissionDenied):
        _open(active=False)


def test_breakglass_lasts_at_most_60_minutes() -> None:
    assert _open(minutes=10).expires_at == T0 + timedelta(minutes=10)
    for minutes in (0, 61, 600):
        with pytest.raises(PermissionDenied):
            _open(minutes=minutes)


def test_breakglass_expires() -> None:
    bg = _open()
    kw = {"active": True, "verified": True, "breakglass": bg, "user_id": "a1"}
    require(Role.ADMIN, Permission.STUDY_READ, now=T0 + timedelta(minutes=59), **kw)  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied, match="expired"):
        require(Role.ADMIN, Permission.STUDY_READ, now=T0 + timedelta(minutes=60), **kw)  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        require(Role.ADMIN, Permission.STUDY_READ, now=T0 - timedelta(seconds=1), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("permission", sorted(PATIENT_DATA_PERMISSIONS - BREAKGLASS_PERMISSIONS))
def test_breakglass_grants_only_reading(permission: Permission) -> None:
    with pytest.raises(PermissionDenied):
        require(Role.ADMIN, permission, active=True, verified=True, breakglass=_open(), user_id="a1", now=T0)


def test_breakglass_read_permissions_are_exactly_the_reads() -> None:
    assert {p.value for p in BREAKGLASS_PERMISSIONS} == {
        "study:list",
        "study:read",
        "study:status",
        "study:images",  # less than study:read shows
        "study:export_deidentified",  # less than study:read shows
        "analysis:read",
        "report:read_preliminary",
        "report:read_final",
        "annotation:read",
    }


def test_someone_elses_breakglass_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="another user"):
        require(Role.ADMIN, Permission.STUDY_READ, active=True, verified=True, breakglass=_open(), user_id="a2", now=T0)


def test_breakglass_access_returns_an_audit_event_for_the_caller() -> None:
    bg = _open()
    grant = require(
        Role.ADMIN, Permission.REPORT_READ_FINAL, active=True, verified=True, breakglass=bg, user_id="a1", now=T0
    )
    event = grant.audit_event(target="report R1", now=T0)
    assert event["event"] == "breakglass.access" and event["breakglass_id"] == bg.breakglass_id
    assert event["reason"] == bg.reason and event["permission"] == "report:read_final"
    assert event["target"] == "report R1"


# -- object rules ---------------------------------------------------------------------------------


def _obj(role: Role, permission: Permission, obj: object, user_id: str = "u1", **kw: object) -> object:
    return object_access(role, permission, obj, user_id=user_id, active=True, verified=True, **kw)  # type: ignore[arg-type]


REPORTS = {
    "preliminary": ReportObject("R1", "S1", "preliminary", signed=False),
    "reviewed": ReportObject("R1", "S1", "reviewed", signed=False),
    "final": ReportObject("R1", "S1", "final", signed=True),
    "amended-draft": ReportObject("R1", "S1", "amended", signed=False),
    "amended-signed": ReportObject("R1", "S1", "amended", signed=True),
}


NEUROLOGIST_SEES = {
    "preliminary": False,
    "reviewed": False,
    "final": True,
    "amended-draft": False,
    "amended-signed": True,
}


@pytest.mark.parametrize(("name", "visible"), sorted(NEUROLOGIST_SEES.items()))
def test_neurologist_reads_only_signed_reports(name: str, visible: bool) -> None:
    report = REPORTS[name]
    for permission in (Permission.REPORT_READ_FINAL, report_read_permission(report)):
        if visible:
            _obj(Role.NEUROLOGIST, permission, report)
        else:
            with pytest.raises(PermissionDenied):
                _obj(Role.NEUROLOGIST, permission, report)


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_radiologist_reads_every_report_version(name: str) -> None:
    report = REPORTS[name]
    assert _obj(Role.RADIOLOGIST, report_read_permission(report), report).via == "role"  # type: ignore[attr-defined]


def test_unknown_report_status_is_refused() -> None:
    with pytest.raises(PermissionDenied):
        _obj(Role.RADIOLOGIST, Permission.REPORT_READ_PRELIMINARY, ReportObject("R1", "S1", "draft", signed=False))


def test_technician_sees_the_status_of_own_uploads_only() -> None:
    _obj(Role.TECHNICIAN, Permission.STUDY_STATUS, StudyObject("S1", uploaded_by="t1"), user_id="t1")
    for uploader in ("t2", None):
        with pytest.raises(PermissionDenied):
            _obj(Role.TECHNICIAN, Permission.STUDY_STATUS, StudyObject("S1", uploaded_by=uploader), user_id="t1")
    with pytest.raises(PermissionDenied):
        _obj(Role.TECHNICIAN, Permission.STUDY_READ, StudyObject("S1", uploaded_by="t1"), user_id="t1")
    _obj(Role.RADIOLOGIST, Permission.STUDY_STATUS, StudyObject("S1", uploaded_by="t2"))  # readers see all


def test_technician_views_the_images_of_own_uploads_only() -> None:
    _obj(Role.TECHNICIAN, Permission.STUDY_IMAGES, StudyObject("S1", uploaded_by="t1"), user_id="t1")
    for uploader in ("t2", None):
        with pytest.raises(PermissionDenied, match="uploaded by someone else"):
            _obj(Role.TECHNICIAN, Permission.STUDY_IMAGES, StudyObject("S1", uploaded_by=uploader), user_id="t1")
    for permission in (Permission.ANALYSIS_READ, Permission.REPORT_READ_FINAL, Permission.REPORT_READ_PRELIMINARY):
        with pytest.raises(PermissionDenied):
            _obj(Role.TECHNICIAN, permission, StudyObject("S1", uploaded_by="t1"), user_id="t1")
    _obj(Role.NEUROLOGIST, Permission.STUDY_IMAGES, StudyObject("S1", uploaded_by="t2"))  # readers see all


def test_technician_gets_no_report_or_annotation() -> None:
    for permission in Permission:
        if permission.value.startswith(("report:", "annotation:")):
            with pytest.raises(PermissionDenied):
                _obj(Role.TECHNICIAN, permission, REPORTS["final"], user_id="t1")


def test_neurologist_annotates_and_reads_annotations() -> None:
    note = AnnotationObject("A1", "S1", author="r1")
    _obj(Role.NEUROLOGIST, Permission.ANNOTATION_READ, note)
    _obj(Role.NEUROLOGIST, Permission.ANNOTATION_CREATE, StudyObject("S1"))


def test_study_scoped_breakglass_opens_only_that_study() -> None:
    bg = _open(study_id="S1")
    kw = {"breakglass": bg, "now": T0}
    _obj(Role.ADMIN, Permission.STUDY_READ, StudyObject("S1"), user_id="a1", **kw)
    _obj(Role.ADMIN, Permission.REPORT_READ_PRELIMINARY, REPORTS["preliminary"], user_id="a1", **kw)
    with pytest.raises(PermissionDenied, match="another study"):
        _obj(Role.ADMIN, Permission.STUDY_READ, StudyObject("S2"), user_id="a1", **kw)
    # An unscoped break-glass reads any study, status included (the own-upload rule is for technicians).
    unscoped = {"breakglass": _open(), "now": T0}
    _obj(Role.ADMIN, Permission.STUDY_STATUS, StudyObject("S2", uploaded_by="t1"), user_id="a1", **unscoped)
