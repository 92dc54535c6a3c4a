"""FHIR Bundle (R4B and R5): valid, references resolve, values equal the measurements table, statuses."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.bundle import Bundle as BundleR5
from fhir.resources.R4B.bundle import Bundle as BundleR4B

from neuronav.findings import Change, Findings
from neuronav.report import codes
from neuronav.report.build import build_report
from neuronav.report.fhir import FhirVersion, fhir_status, make_bundle, mrn_system, study_date_iso
from neuronav.report.lifecycle import amend, edit, sign
from neuronav.report.model import Patient, Report
from neuronav.report.outputs import parse_formats, write_outputs
from tests.analysis.findings_factory import make_findings
from tests.report.conftest import Analysed

WHEN = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
VERSIONS: tuple[FhirVersion, ...] = ("R4", "R4B", "R5")
# FHIR value sets the models do not check (codes are plain strings to fhir.resources)
REPORT_STATUSES = {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended"}
OBSERVATION_STATUSES = {"registered", "preliminary", "final", "amended", "corrected"}
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def by_url(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def observations_by_key(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["identifier"][0]["value"].rsplit("/", 1)[1]: o for o in resources(bundle, "Observation")}


@pytest.fixture
def quick() -> Report:
    return build_report(make_findings(enhancing_ml=10.0, whole_tumour_ml=30.0), now=WHEN)


@pytest.mark.parametrize("version", VERSIONS)
def test_valid_and_every_reference_resolves(report: Report, version: FhirVersion) -> None:
    bundle = make_bundle(report, version=version, pdf=PDF)
    model = BundleR5 if version == "R5" else BundleR4B  # fhir.resources has no R4 models: R4B's are R4's here
    parsed = model.model_validate(bundle)
    assert parsed.type == "transaction"
    for e in bundle["entry"]:  # a transaction: each entry says what the server does with it
        kind, request = e["resource"]["resourceType"], e["request"]
        if kind in ("DiagnosticReport", "Observation"):  # conditional update: an amendment updates them
            assert request["method"] == "PUT" and request["url"].startswith(f"{kind}?identifier=")
        elif kind == "Provenance":
            assert request == {"method": "POST", "url": "Provenance"}
        else:  # conditional create of what the server may already hold
            assert request["method"] == "POST" and request["url"] == kind
            assert request["ifNoneExist"].startswith("identifier=")
    json.dumps(bundle)  # plain JSON
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls)
    assert all(u.startswith("urn:uuid:") for u in urls)
    refs = set(references(bundle))
    assert refs and refs <= set(urls)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("DiagnosticReport") == kinds.count("Patient") == kinds.count("ImagingStudy") == 1
    assert kinds.count("Provenance") == 1
    assert kinds.count("Observation") == len(report.measurements) + 2  # + detection and classification


def test_same_report_validates_in_both_versions(report: Report) -> None:
    r4b = make_bundle(report, version="R4B", pdf=PDF)
    r5 = make_bundle(report, version="R5", pdf=PDF)
    BundleR4B.model_validate(r4b)
    BundleR5.model_validate(r5)
    with pytest.raises(ValueError):  # the R4B shape is not R5 (imagingStudy, deviceName, modality Coding)
        BundleR5.model_validate(r4b)
    with pytest.raises(ValueError):
        BundleR4B.model_validate(r5)
    assert [e["fullUrl"] for e in r4b["entry"]] == [e["fullUrl"] for e in r5["entry"]]
    (dr4,), (dr5,) = resources(r4b, "DiagnosticReport"), resources(r5, "DiagnosticReport")
    assert dr4["imagingStudy"] == dr5["study"]
    assert "study" not in dr4 and "imagingStudy" not in dr5
    assert {d["deviceName"][0]["name"] for d in resources(r4b, "Device")} == {
        d["name"][0]["value"] for d in resources(r5, "Device")
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_observations_equal_the_measurements(report: Report, version: FhirVersion) -> None:
    bundle = make_bundle(report, version=version)
    urls = by_url(bundle)
    (study_url,) = [u for u, r in urls.items() if r["resourceType"] == "ImagingStudy"]
    (patient_url,) = [u for u, r in urls.items() if r["resourceType"] == "Patient"]
    obs = observations_by_key(bundle)
    for m in report.measurements:
        o = obs[m.key]
        assert o["identifier"][0] == {"system": "urn:neuronav:measurement", "value": f"{report.report_id}/{m.key}"}
        assert o["status"] == "preliminary"
        coding = o["code"]["coding"][0]
        assert (coding["system"], coding["code"]) == (codes.SYSTEM_URLS[m.concept.scheme], m.concept.value)
        assert o["code"]["text"] == m.label
        q = o["valueQuantity"]
        assert q["value"] == m.value
        assert (q["system"], q["code"]) == ("http://unitsofmeasure.org", m.unit)
        if m.finding_site is not None:
            assert o["bodySite"]["coding"][0]["code"] == m.finding_site.value
        if m.laterality is not None:
            (component,) = o["component"]
            assert component["code"]["coding"][0]["code"] == "272741003"
            assert component["valueCodeableConcept"]["text"].lower() in (m.laterality, "median")
        assert o["subject"] == {"reference": patient_url}
        assert o["derivedFrom"][0]["reference"] == study_url
        assert any(m.source in n["text"] for n in o["note"])
        assert any("not for clinical use" in n["text"] for n in o["note"])
        assert o["effectiveDateTime"] == study_date_iso(report.study_info.study_date)
        device = urls[o["device"]["reference"]]
        names = {p.name for p in m.produced_by}
        if len(names) == 1:
            assert device["identifier"][0]["value"] == f"{m.produced_by[0].name}@{m.produced_by[0].version}"
        else:  # an ensemble: its members name it as their parent
            members = [
                d
                for d in resources(bundle, "Device")
                if d.get("parent", {}).get("reference") == o["device"]["reference"]
            ]
            assert {d["identifier"][0]["value"].split("@")[0] for d in members} == names


@pytest.mark.parametrize("version", VERSIONS)
def test_diagnostic_report(report: Report, version: FhirVersion) -> None:
    bundle = make_bundle(report, version=version, pdf=PDF)
    urls = by_url(bundle)
    (dr,) = resources(bundle, "DiagnosticReport")
    assert dr["status"] == "preliminary"
    assert dr["code"]["coding"][0] == {"system": "http://loinc.org", "code": "24590-2", "display": "MR Brain"}
    assert {c["coding"][0]["code"] for c in dr["category"]} == {"LP29684-5", "RAD"}
    assert dr["identifier"][0]["value"] == report.report_id
    assert dr["identifier"][1]["value"] == f"{report.report_id}/v{report.version}"
    assert dr["effectiveDateTime"] == study_date_iso(report.study_info.study_date)
    assert datetime.fromisoformat(dr["issued"]) == report.created
    assert dr["conclusion"] == report.narrative.impression
    observations = {u for u, r in urls.items() if r["resourceType"] == "Observation"}
    assert {r["reference"] for r in dr["result"]} == observations
    study = dr["study" if version == "R5" else "imagingStudy"][0]["reference"]
    assert urls[study]["resourceType"] == "ImagingStudy"
    assert urls[dr["subject"]["reference"]]["resourceType"] == "Patient"
    pdf_form, text_form = dr["presentedForm"]
    assert pdf_form["contentType"] == "application/pdf"
    assert base64.b64decode(pdf_form["data"]) == PDF
    assert base64.b64decode(pdf_form["hash"]) == hashlib.sha1(PDF).digest()
    assert report.report_id in pdf_form["title"] and f"v{report.version}" in pdf_form["title"]
    assert "preliminary" in pdf_form["title"]
    text = base64.b64decode(text_form["data"]).decode("utf-8")
    assert report.narrative.impression in text
    assert all(d in text for d in report.disclaimers)
    assert "performer" not in dr and "resultsInterpreter" not in dr  # not signed
    assert not resources(bundle, "Practitioner")
    (without_pdf,) = resources(make_bundle(report, version=version), "DiagnosticReport")
    assert [f["contentType"] for f in without_pdf["presentedForm"]] == ["text/plain; charset=utf-8"]


@pytest.mark.parametrize("version", VERSIONS)
def test_detection_and_classification(report: Report, version: FhirVersion) -> None:
    obs = observations_by_key(make_bundle(report, version=version))
    pd = report.ai_findings.primary_detection
    det = obs["tumour_detected"]
    assert det["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "52101004",
        "display": "Present",
    }
    cls = obs["tumour_classification"]
    assert cls["valueCodeableConcept"]["coding"][0]["code"] == pd.classification
    probabilities = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in cls["component"]}
    assert probabilities == pd.class_probabilities


@pytest.mark.parametrize("version", VERSIONS)
def test_study_patient_devices_provenance(report: Report, version: FhirVersion) -> None:
    bundle = make_bundle(report, version=version)
    urls = by_url(bundle)
    si = report.study_info
    (study,) = resources(bundle, "ImagingStudy")
    assert study["identifier"] == [{"system": "urn:dicom:uid", "value": f"urn:oid:{si.study_instance_uid}"}]
    assert study["status"] == "available"
    assert study["series"][0]["uid"] == si.reference_series_uid
    mr = study["series"][0]["modality"] if version != "R5" else study["series"][0]["modality"]["coding"][0]
    assert mr["code"] == "MR"
    (patient,) = resources(bundle, "Patient")
    assert patient["identifier"] == [{"system": "urn:neuronav:pseudonym", "value": si.patient_pseudonym}]
    assert set(patient) == {"resourceType", "meta", "identifier"}  # no name, no birth date, nothing else
    devices = resources(bundle, "Device")
    ids = {d["identifier"][0]["value"] for d in devices}
    assert {f"{m.name}@{m.version}" for m in si.models} <= ids
    for m in si.models:
        (d,) = [d for d in devices if d["identifier"][0]["value"] == f"{m.name}@{m.version}"]
        assert d["version"] == [{"value": m.version}]
        name = d["deviceName"][0]["name"] if version != "R5" else d["name"][0]["value"]
        assert name == m.name
        if m.sha256:
            assert d["identifier"][1] == {"system": "urn:neuronav:model-sha256", "value": m.sha256}
    (prov,) = resources(bundle, "Provenance")
    targets = {t["reference"] for t in prov["target"]}
    expected = {u for u, r in urls.items() if r["resourceType"] in ("DiagnosticReport", "Observation")}
    assert targets == expected
    assert {a["who"]["reference"] for a in prov["agent"]} == {
        u for u, r in urls.items() if r["resourceType"] == "Device"
    }
    assert urls[prov["entity"][0]["what"]["reference"]]["resourceType"] == "ImagingStudy"
    assert prov["entity"][0]["role"] == "source"
    assert datetime.fromisoformat(prov["recorded"]) == report.created


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], "preliminary"),
        (["edit"], "preliminary"),
        (["sign"], "final"),
        (["sign", "amend"], "preliminary"),  # an unsigned amendment is a draft
        (["sign", "amend", "sign"], "amended"),
        (["sign", "amend", "edit", "sign"], "amended"),
    ],
)
@pytest.mark.parametrize("version", VERSIONS)
def test_status(quick: Report, steps: list[str], expected: str, version: FhirVersion) -> None:
    r = quick
    for step in steps:
        if step == "edit":
            r = edit(r, {"/narrative/impression": "Left frontal glioma."}, who="Dr Test", role="radiologist", when=WHEN)
        elif step == "sign":
            r = sign(r, who="Dr Test", role="radiologist", when=WHEN)
        else:
            r = amend(r, who="Dr Test", role="radiologist", reason="Size corrected", when=WHEN)
    bundle = make_bundle(r, version=version, pdf=PDF)
    assert fhir_status(r) == expected
    (dr,) = resources(bundle, "DiagnosticReport")
    assert dr["status"] == expected and expected in REPORT_STATUSES
    assert {o["status"] for o in resources(bundle, "Observation")} == {expected} and expected in OBSERVATION_STATUSES
    assert dr["conclusion"] == r.narrative.impression
    assert f"({r.status})" in dr["presentedForm"][0]["title"]


@pytest.mark.parametrize("version", VERSIONS)
def test_signed_report_names_the_signer(quick: Report, version: FhirVersion) -> None:
    r = sign(quick, who="Dr Test", role="radiologist", when=WHEN)
    bundle = make_bundle(r, version=version)
    urls = by_url(bundle)
    (dr,) = resources(bundle, "DiagnosticReport")
    assert dr["status"] == "final"
    (practitioner,) = resources(bundle, "Practitioner")
    assert practitioner["name"] == [{"text": "Dr Test"}]
    assert urls[dr["resultsInterpreter"][0]["reference"]] is practitioner
    assert urls[dr["performer"][0]["reference"]] is practitioner
    assert datetime.fromisoformat(dr["issued"]) == WHEN  # released when signed
    (prov,) = resources(bundle, "Provenance")
    attesters = [a for a in prov["agent"] if a["type"]["coding"][0]["code"] == "attester"]
    assert [urls[a["who"]["reference"]] for a in attesters] == [practitioner]


@pytest.mark.parametrize("version", VERSIONS)
def test_without_pseudonym_study_uid_or_date(version: FhirVersion) -> None:
    f = make_findings()
    study = f.study.model_copy(
        update={"study_date": "", "patient_pseudonym": None, "study_instance_uid": None, "reference_series_uid": None}
    )
    r = build_report(Findings.model_validate(f.model_copy(update={"study": study}).model_dump()), now=WHEN)
    bundle = make_bundle(r, version=version)
    (patient,) = resources(bundle, "Patient")
    assert "identifier" not in patient
    assert patient["meta"]["security"][0]["code"] == "ANONYED"
    (study_res,) = resources(bundle, "ImagingStudy")
    assert "identifier" not in study_res and "series" not in study_res
    (dr,) = resources(bundle, "DiagnosticReport")
    assert "effectiveDateTime" not in dr
    assert set(references(bundle)) <= {e["fullUrl"] for e in bundle["entry"]}


def test_not_detected_has_absent_and_no_classification() -> None:
    f = make_findings()
    f = f.model_copy(update={"detection": f.detection.model_copy(update={"tumour_detected": False})})
    r = build_report(Findings.model_validate(f.model_dump()), now=WHEN)
    obs = observations_by_key(make_bundle(r))
    assert obs["tumour_detected"]["valueCodeableConcept"]["coding"][0]["code"] == "2667000"
    assert "tumour_classification" not in obs and "classification_confidence" not in obs


def test_deterministic_apart_from_the_timestamp(quick: Report) -> None:
    a, b = make_bundle(quick, pdf=PDF), make_bundle(quick, pdf=PDF)
    a.pop("timestamp"), b.pop("timestamp")
    assert a == b


def test_study_date_iso() -> None:
    assert study_date_iso("20240223") == "2024-02-23"
    assert study_date_iso("2024-02-23") == "2024-02-23"
    assert study_date_iso("") is None
    assert study_date_iso("20241341") is None


def test_unknown_version(quick: Report) -> None:
    with pytest.raises(ValueError, match="R4, R4B, R5"):
        make_bundle(quick, version="R3")  # type: ignore[arg-type]


def test_fast_enough(report: Report) -> None:
    make_bundle(report, version="R5", pdf=PDF)  # imports
    t0 = time.perf_counter()
    for version in VERSIONS:
        make_bundle(report, version=version, pdf=PDF)
    assert time.perf_counter() - t0 < 1.0  # measured ~0.03 s each; generous for slow CI machines


def test_written_by_write_outputs_with_the_pdf(report: Report, analysed: Analysed, tmp_path: Path) -> None:
    formats = parse_formats("pdf,fhir,fhir-r4b,fhir-r5")
    assert formats == ["pdf", "fhir-r4", "fhir-r4b", "fhir-r5"]  # fhir: the release EHRs run
    written = write_outputs(report, formats, tmp_path, analysis_dir=analysed.analysis_dir)
    pdf = (tmp_path / "report.pdf").read_bytes()
    for name, model in (("fhir-r4.json", BundleR4B), ("fhir-r4b.json", BundleR4B), ("fhir-r5.json", BundleR5)):
        bundle = json.loads((tmp_path / name).read_text(encoding="utf-8"))
        model.model_validate(bundle)
        (dr,) = resources(bundle, "DiagnosticReport")
        assert base64.b64decode(dr["presentedForm"][0]["data"]) == pdf
    assert written.files["fhir-r5"] == [tmp_path / "fhir-r5.json"]


IDENTIFIED = Patient(
    name="Doe-Smith^Jane^Q^Dr^III",
    mrn="0042 7",
    mrn_issuer="1.2.840.99.1",
    birth_date="19700102",
    sex="F",
    accession_number="ACC-77",
    referring_physician="House^Gregory",
)


@pytest.mark.parametrize("version", VERSIONS)
def test_clinical_bundle_names_the_patient_and_answers_the_order(quick: Report, version: FhirVersion) -> None:
    bundle = make_bundle(quick.model_copy(update={"patient": IDENTIFIED}), version=version)
    (BundleR5 if version == "R5" else BundleR4B).model_validate(bundle)
    entries = {e["fullUrl"]: e for e in bundle["entry"]}
    (patient,) = resources(bundle, "Patient")
    (mrn,) = patient["identifier"]
    assert (mrn["system"], mrn["value"]) == ("urn:oid:1.2.840.99.1", "0042 7")
    assert mrn["type"]["coding"][0]["code"] == "MR"
    assert patient["name"][0]["family"] == "Doe-Smith"
    assert patient["name"][0]["given"] == ["Jane", "Q"]
    assert (patient["name"][0]["prefix"], patient["name"][0]["suffix"]) == (["Dr"], ["III"])
    assert (patient["birthDate"], patient["gender"]) == ("1970-01-02", "female")
    assert "meta" not in patient  # not labelled pseudonymised
    (patient_entry,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient_entry["request"]["ifNoneExist"] == "identifier=urn:oid:1.2.840.99.1|0042%207"
    (order,) = resources(bundle, "ServiceRequest")
    assert order["identifier"][0]["value"] == "ACC-77"
    assert order["identifier"][0]["type"]["coding"][0]["code"] == "ACSN"
    assert order["requester"]["display"] == "Gregory House"
    (dr,) = resources(bundle, "DiagnosticReport")
    (based_on,) = dr["basedOn"]
    assert entries[based_on["reference"]]["resource"] is order
    (study,) = resources(bundle, "ImagingStudy")
    assert {i["value"] for i in study["identifier"]} == {"urn:oid:1.2.3", "ACC-77"}
    assert dr["subject"]["reference"] == patient_entry["fullUrl"]


def test_pseudonymous_bundle_has_no_order_and_no_identity() -> None:
    f = make_findings()
    f = f.model_copy(update={"study": f.study.model_copy(update={"patient_pseudonym": "pz-123"})})
    bundle = make_bundle(build_report(f, now=WHEN))
    assert not resources(bundle, "ServiceRequest")
    (patient,) = resources(bundle, "Patient")
    assert set(patient) == {"resourceType", "meta", "identifier"}


def test_mrn_system() -> None:
    assert mrn_system("2.16.840.1.113883.3.72") == "urn:oid:2.16.840.1.113883.3.72"
    assert mrn_system("HOSP A") == "urn:neuronav:mrn:HOSP A"
    assert mrn_system(None) == "urn:neuronav:mrn"


def test_change_versus_prior_and_rano_are_observations() -> None:
    change = Change(
        prior_study="1.2.3",
        prior_date="20240101",
        volume_change_percent={"whole_tumour_ml": 50.0, "enhancing_ml": None},
        prior_volumes_ml={"whole_tumour_ml": 20.0, "enhancing_ml": 0.0},
        rano_category="progression",
        rule="enhancing +25 %",
    )
    r = build_report(make_findings().model_copy(update={"change": change}), now=WHEN)
    obs = observations_by_key(make_bundle(r, version="R4"))
    assert obs["rano_category"]["valueCodeableConcept"]["coding"][0]["code"] == "progression"
    assert obs["change_whole_tumour_ml"]["valueQuantity"] == {
        "value": 50.0,
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    }
    assert "change_enhancing_ml" not in obs  # no percentage against a prior of 0
