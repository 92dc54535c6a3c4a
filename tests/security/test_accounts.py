"""Account states and the admin's verification of the professional (licence number, role)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from neuronav.security.accounts import (
    Account,
    AccountState,
    activate,
    can_sign_in,
    change_role,
    disable,
    enable,
    new_account,
    normalize_licence,
    verify_professional,
)
from neuronav.security.errors import AccountStateError, PermissionDenied
from neuronav.security.permissions import Permission, Role, require

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def pending() -> Account:
    return new_account(user_id="u1", username="jdoe", email="jane.doe@hospital.example", role="radiologist")


def test_new_account_is_pending_and_can_do_nothing(pending: Account) -> None:
    assert pending.state is AccountState.PENDING and not pending.active and not pending.verified
    assert not can_sign_in(pending)
    for permission in Permission:
        with pytest.raises(PermissionDenied):
            require(pending.role, permission, active=pending.active, verified=pending.verified)


def test_new_account_needs_a_name_email_and_known_role() -> None:
    with pytest.raises(AccountStateError):
        new_account(user_id="u1", username=" ", email="a@b.example", role="radiologist")
    with pytest.raises(AccountStateError):
        new_account(user_id="u1", username="jdoe", email="no-at-sign", role="radiologist")
    with pytest.raises(AccountStateError, match="the roles are technician, radiologist, neurologist, admin"):
        new_account(user_id="u1", username="jdoe", email="a@b.example", role="surgeon")


def test_admin_verification_activates_with_licence_and_role(pending: Account) -> None:
    active = activate(
        pending, licence_number=" gmc  7654321 ", role="radiologist", verifier_id="a1", verifier_role="admin", now=T0
    )
    assert active.state is AccountState.ACTIVE and active.licence_number == "GMC 7654321"
    assert active.verified_by == "a1" and active.verified_at == T0 and active.verified and can_sign_in(active)
    require(active.role, Permission.REPORT_SIGN, active=active.active, verified=active.verified)


def test_verifier_may_correct_the_requested_role(pending: Account) -> None:
    active = activate(pending, licence_number="NL-123", role="neurologist", verifier_id="a1", verifier_role="admin")
    assert active.role is Role.NEUROLOGIST


@pytest.mark.parametrize("licence", ["", "   ", "ab", "x" * 65, "ABC;DROP", "-123", "12 3-"])
def test_licence_must_be_present_and_well_formed(licence: str) -> None:
    with pytest.raises(AccountStateError, match="licence or registration number"):
        verify_professional(licence, "radiologist", totp_enrolled=False)


def test_licence_is_normalised() -> None:
    assert normalize_licence("  big-12/345.6 ") == "BIG-12/345.6"


def test_role_must_be_known() -> None:
    with pytest.raises(AccountStateError, match="unknown role"):
        verify_professional("GMC123", "superuser", totp_enrolled=True)


def test_admin_needs_totp_before_activation(pending: Account) -> None:
    with pytest.raises(AccountStateError, match="second factor"):
        verify_professional("STAFF-42", "admin", totp_enrolled=False)
    assert verify_professional("STAFF-42", Role.ADMIN, totp_enrolled=True) == ("STAFF-42", Role.ADMIN)
    with pytest.raises(AccountStateError, match="second factor"):
        activate(pending, licence_number="STAFF-42", role="admin", verifier_id="a1", verifier_role="admin")
    enrolled = replace(pending, totp_enrolled=True)
    admin = activate(enrolled, licence_number="STAFF-42", role="admin", verifier_id="a1", verifier_role="admin")
    assert admin.role is Role.ADMIN and can_sign_in(admin)


@pytest.mark.parametrize("verifier_role", ["technician", "radiologist", "neurologist", "nobody"])
def test_only_admins_verify(pending: Account, verifier_role: str) -> None:
    with pytest.raises(PermissionDenied):
        activate(pending, licence_number="GMC123", role="radiologist", verifier_id="x1", verifier_role=verifier_role)


def test_nobody_verifies_their_own_account() -> None:
    me = replace(new_account(user_id="a1", username="boss", email="b@x.example", role="admin"), totp_enrolled=True)
    with pytest.raises(PermissionDenied, match="own account"):
        activate(me, licence_number="STAFF-1", role="admin", verifier_id="a1", verifier_role="admin")


def test_activation_only_from_pending(pending: Account) -> None:
    active = activate(pending, licence_number="GMC123", role="radiologist", verifier_id="a1", verifier_role="admin")
    with pytest.raises(AccountStateError, match="not pending"):
        activate(active, licence_number="GMC123", role="radiologist", verifier_id="a1", verifier_role="admin")


def test_disable_and_enable(pending: Account) -> None:
    active = activate(pending, licence_number="GMC123", role="radiologist", verifier_id="a1", verifier_role="admin")
    with pytest.raises(AccountStateError, match="reason"):
        disable(active, reason=" ", by_id="a1", by_role="admin")
    off = disable(active, reason="left the hospital", by_id="a1", by_role="admin")
    assert off.state is AccountState.DISABLED and off.disabled_reason == "left the hospital" and not can_sign_in(off)
    for permission in Permission:
        with pytest.raises(PermissionDenied):
            require(off.role, permission, active=off.active, verified=off.verified)
    with pytest.raises(AccountStateError, match="already disabled"):
        disable(off, reason="again and again", by_id="a1", by_role="admin")
    back = enable(off, by_id="a1", by_role="admin")
    assert back.state is AccountState.ACTIVE and back.disabled_reason is None
    with pytest.raises(AccountStateError, match="not disabled"):
        enable(back, by_id="a1", by_role="admin")


def test_rejected_registration_re_enabled_goes_back_to_pending(pending: Account) -> None:
    rejected = disable(pending, reason="licence not found", by_id="a1", by_role="admin")
    assert enable(rejected, by_id="a1", by_role="admin").state is AccountState.PENDING


def test_only_admins_disable_and_not_themselves(pending: Account) -> None:
    with pytest.raises(PermissionDenied):
        disable(pending, reason="because I can", by_id="r1", by_role="radiologist")
    with pytest.raises(PermissionDenied):
        disable(pending, reason="because I can", by_id="u1", by_role="admin")


def test_role_change_to_admin_needs_totp(pending: Account) -> None:
    active = activate(pending, licence_number="GMC123", role="radiologist", verifier_id="a1", verifier_role="admin")
    with pytest.raises(AccountStateError, match="second factor"):
        change_role(active, "admin", by_id="a1", by_role="admin")
    assert change_role(active, "neurologist", by_id="a1", by_role="admin").role is Role.NEUROLOGIST
    assert change_role(replace(active, totp_enrolled=True), "admin", by_id="a1", by_role="admin").role is Role.ADMIN


def test_admin_without_totp_cannot_sign_in_or_be_enabled(pending: Account) -> None:
    admin = replace(pending, role=Role.ADMIN, state=AccountState.ACTIVE, licence_number="S1", verified_at=T0)
    assert not can_sign_in(admin)
    off = replace(admin, state=AccountState.DISABLED)
    with pytest.raises(AccountStateError, match="second factor"):
        enable(off, by_id="a1", by_role="admin")
