"""The FHIR sender against a real FHIR server (Medplum's router and repository, R4 definitions): the
transaction is applied, the DiagnosticReport is found by the patient's MRN and the accession number, an
amendment updates the same DiagnosticReport, a refused bundle keeps the server's OperationOutcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from neuronav.integrations.fhir.client import post_transaction
from neuronav.report.build import build_report
from neuronav.report.fhir import ACCESSION_SYSTEM, make_bundle, mrn_system
from neuronav.report.lifecycle import amend, edit, sign
from neuronav.report.model import Patient, Report
from tests.analysis.findings_factory import make_findings
from tests.integrations.peers import FhirServer

pytestmark = pytest.mark.fhir_server
WHEN = datetime(2026, 11, 29, 12, tzinfo=UTC)


def patient(n: int) -> Patient:
    return Patient(
        name=f"Doe^Jane{n}", mrn=f"MRN{n}", mrn_issuer="1.2.840.99.7", birth_date="19700102", sex="F",
        accession_number=f"ACC{n}", referring_physician="House^Gregory",
    )  # fmt: skip


def signed(n: int) -> Report:
    r = build_report(make_findings(), now=WHEN)
    return sign(r, who="Dr Who", role="radiologist").model_copy(update={"patient": patient(n)})


def config(server: FhirServer, **extra: Any) -> dict[str, Any]:
    return {"base_url": server.base_url, "auth": "bearer", "conditional": "client", "timeout_s": 10, **extra}


def search(server: FhirServer, kind: str, **params: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.base_url}/{kind}", params=params, headers={"Authorization": f"Bearer {server.token}"})
    r.raise_for_status()
    return [e["resource"] for e in r.json().get("entry", [])]


def report_of(server: FhirServer, n: int) -> list[dict[str, Any]]:
    """The DiagnosticReports of the patient with MRN n answering the order of accession n."""
    (pat,) = search(server, "Patient", identifier=f"{mrn_system('1.2.840.99.7')}|MRN{n}")
    (order,) = search(server, "ServiceRequest", identifier=f"{ACCESSION_SYSTEM}|ACC{n}")
    return search(
        server, "DiagnosticReport", subject=f"Patient/{pat['id']}", **{"based-on": f"ServiceRequest/{order['id']}"}
    )


@pytest.mark.parametrize("version", ["R4", "R4B"])
def test_transaction_applied_and_found_by_mrn_and_accession(fhir_server: FhirServer, version: str) -> None:
    n = 1 if version == "R4" else 2
    bundle = make_bundle(signed(n), version=version, pdf=b"%PDF-1.4 test")  # type: ignore[arg-type]
    result = post_transaction(config(fhir_server), {"token": fhir_server.token}, bundle)
    assert result.delivered, result.text
    assert result.status == "HTTP 200"
    (dr,) = report_of(fhir_server, n)
    assert dr["status"] == "final"
    assert len(dr["result"]) == len([e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"])
    assert all(ref["reference"].startswith("Observation/") for ref in dr["result"])  # urn:uuid resolved
    (pat,) = search(fhir_server, "Patient", identifier=f"{mrn_system('1.2.840.99.7')}|MRN{n}")
    assert pat["name"][0]["family"] == "Doe" and pat["birthDate"] == "1970-01-02"
    assert f"DiagnosticReport/{dr['id']}" in (result.text or "")


def test_amendment_updates_the_same_diagnostic_report(fhir_server: FhirServer) -> None:
    first = signed(3)
    assert post_transaction(config(fhir_server), {"token": fhir_server.token}, make_bundle(first)).delivered
    (before,) = report_of(fhir_server, 3)
    amended = amend(first, who="Dr Who", role="radiologist", reason="typo in the impression")
    amended = edit(amended, {"/narrative/impression": "Corrected impression."}, who="Dr Who", role="radiologist")
    amended = sign(amended, who="Dr Who", role="radiologist").model_copy(update={"patient": patient(3)})
    result = post_transaction(config(fhir_server), {"token": fhir_server.token}, make_bundle(amended))
    assert result.delivered, result.text
    (after,) = report_of(fhir_server, 3)  # still one
    assert after["id"] == before["id"]
    assert (after["status"], after["conclusion"]) == ("amended", "Corrected impression.")
    assert after["meta"]["versionId"] != before["meta"]["versionId"]
    key = first.measurements[0].key
    found = search(fhir_server, "Observation", identifier=f"urn:neuronav:measurement|{first.report_id}/{key}")
    assert len(found) == 1 and found[0]["status"] == "amended"  # observations updated, not doubled
    assert len(search(fhir_server, "Patient", identifier=f"{mrn_system('1.2.840.99.7')}|MRN3")) == 1


def test_client_credentials(fhir_server: FhirServer) -> None:
    cfg = config(
        fhir_server, auth="client_credentials", token_url=f"{fhir_server.base_url}/oauth2/token", client_id="neuronav"
    )
    result = post_transaction(cfg, {"client_secret": fhir_server.token}, make_bundle(signed(4)))
    assert result.delivered, result.text
    assert len(report_of(fhir_server, 4)) == 1
    refused = post_transaction({**cfg, "client_id": "intruder"}, {"client_secret": "wrong"}, make_bundle(signed(5)))
    assert (refused.delivered, refused.retry, refused.status) == (False, False, "token")


def test_wrong_token_is_refused_without_retry(fhir_server: FhirServer) -> None:
    result = post_transaction(config(fhir_server), {"token": "not-the-token"}, make_bundle(signed(6)))
    assert (result.delivered, result.retry, result.status) == (False, False, "HTTP 401")


def test_an_invalid_bundle_keeps_the_operation_outcome(fhir_server: FhirServer) -> None:
    bundle = make_bundle(signed(7))
    (pat,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    pat["resource"]["birthDate"] = "02/01/1970"  # not a FHIR date: the server's validator refuses it
    result = post_transaction(config(fhir_server), {"token": fhir_server.token}, bundle)
    assert (result.delivered, result.retry, result.status) == (False, False, "HTTP 400")
    outcome = json.loads(result.text or "{}")
    assert outcome["resourceType"] == "OperationOutcome"
    assert "birthDate" in json.dumps(outcome)


def test_unreachable_server_is_retried() -> None:
    result = post_transaction({"base_url": "http://127.0.0.1:9", "timeout_s": 2}, {}, {"resourceType": "Bundle"})
    assert (result.delivered, result.retry) == (False, True)


def test_conditional_server_mode_gets_medplums_limit_as_an_operation_outcome(fhir_server: FhirServer) -> None:
    # Medplum applies a transaction with conditional entries under strict isolation, at most 8 entries:
    # why `conditional: client` exists. The refusal is the server's own, kept for the admin.
    result = post_transaction(
        config(fhir_server, conditional="server"), {"token": fhir_server.token}, make_bundle(signed(8))
    )
    assert (result.delivered, result.retry, result.status) == (False, False, "HTTP 400")
    assert "strict isolation" in (result.text or "")
    assert search(fhir_server, "Patient", identifier=f"{mrn_system('1.2.840.99.7')}|MRN8") == []  # nothing applied
