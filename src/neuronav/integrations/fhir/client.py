"""POST a report's FHIR transaction to a hospital's FHIR server (httpx), with a bearer token or OAuth2
client credentials (SMART backend services: ``client_secret_post`` to the token endpoint).

The outcome (:class:`~neuronav.integrations.outbox.SendResult`):

=========================================  ==================================================
answer                                      outcome
=========================================  ==================================================
2xx, every entry of the transaction-        delivered (text: the ``location`` of each entry, so
response 2xx                                an admin can find the DiagnosticReport)
401 with client credentials                 the token is fetched again, once, then as below
400–499 but 408 / 429                       failed: the OperationOutcome is kept (JSON)
408, 429, 5xx, no answer, network error     retried with back-off
=========================================  ==================================================

``conditional: client`` (a destination setting) resolves the transaction's conditional entries by
searches before sending it — ``ifNoneExist`` of a resource found becomes a reference to it, a
conditional update of one found becomes an update by id — for servers that limit conditional
transactions (Medplum: at most 8 entries in a transaction with a conditional entry). The
DiagnosticReport is still found by its identifier, so an amendment updates the same resource.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import httpx

from neuronav.errors import DeliveryError
from neuronav.integrations.outbox import SendResult
from neuronav.workflow.deliveries import Payload

FHIR_JSON = "application/fhir+json"
_tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (token URL, client id) → (token, expiry)
_contexts: dict[str, ssl.SSLContext] = {}  # CA file ('' = the system's) → context (loading one costs ~100 ms)
_tokens_lock = threading.Lock()


class TokenError(DeliveryError):
    """The token endpoint refused or did not answer (its text is kept)."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def _client_token(http: httpx.Client, cfg: dict[str, Any], secrets: dict[str, str], *, fresh: bool) -> str:
    key = (str(cfg["token_url"]), str(cfg["client_id"]))
    with _tokens_lock:
        cached = _tokens.get(key)
        if cached is not None and not fresh and cached[1] > time.monotonic() + 30:
            return cached[0]
    form = {"grant_type": "client_credentials", "client_id": key[1], "client_secret": secrets.get("client_secret", "")}
    if cfg.get("scope"):
        form["scope"] = str(cfg["scope"])
    try:
        r = http.post(key[0], data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise TokenError(f"token endpoint unreachable ({type(exc).__name__})", retry=True) from exc
    if r.status_code != 200:
        raise TokenError(f"token endpoint answered {r.status_code}: {r.text[:500]}", retry=r.status_code >= 500)
    body = r.json()
    token = str(body.get("access_token", ""))
    if not token:
        raise TokenError("token endpoint answered without an access_token", retry=False)
    with _tokens_lock:
        _tokens[key] = (token, time.monotonic() + float(body.get("expires_in", 300)))
    return token


def _headers(
    http: httpx.Client, cfg: dict[str, Any], secrets: dict[str, str], *, fresh: bool = False
) -> dict[str, str]:
    headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
    if cfg.get("auth") == "bearer":
        headers["Authorization"] = f"Bearer {secrets.get('token', '')}"
    elif cfg.get("auth") == "client_credentials":
        headers["Authorization"] = f"Bearer {_client_token(http, cfg, secrets, fresh=fresh)}"
    return headers


def _search_one(http: httpx.Client, base: str, kind: str, query: str, headers: dict[str, str]) -> str | None:
    """The id of the one ``kind`` matching ``query`` (None when none; ValueError when several)."""
    params: list[tuple[str, str | int | float | bool | None]] = list(parse_qsl(query))
    r = http.get(f"{base}/{kind}", params=params, headers=headers)
    r.raise_for_status()
    found = [
        e["resource"]["id"] for e in r.json().get("entry", []) if e.get("resource", {}).get("resourceType") == kind
    ]
    if len(found) > 1:
        raise ValueError(f"{len(found)} {kind} resources match {query}: the server must decide (conditional: server)")
    return found[0] if found else None


def _search_many(
    http: httpx.Client, base: str, kind: str, system: str, values: list[str], headers: dict[str, str]
) -> dict[str, str]:
    """identifier value → id of each ``kind`` with ``system|value`` (one search: values OR-ed)."""
    query = ",".join(f"{system}|{v.replace(',', chr(92) + ',')}" for v in values)
    r = http.get(
        f"{base}/{kind}", params={"identifier": query, "_count": str(max(len(values) * 2, 20))}, headers=headers
    )
    r.raise_for_status()
    found: dict[str, str] = {}
    for e in r.json().get("entry", []):
        res = e.get("resource", {})
        for ident in res.get("identifier", []):
            if ident.get("system") == system and ident.get("value") in values:
                if ident["value"] in found and found[ident["value"]] != res["id"]:
                    raise ValueError(f"several {kind} resources have the identifier {ident['value']}")
                found[ident["value"]] = res["id"]
    return found


def resolve_conditionals(
    http: httpx.Client, base: str, bundle: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """The transaction with its conditional entries resolved by searches (see the module's docstring).
    The conditional updates of one kind by one identifier system (the report's Observations) are
    resolved by one search."""
    found: dict[str, str] = {}  # fullUrl → "Kind/id" of an existing resource to refer to
    batched: dict[tuple[str, str], list[str]] = {}
    for e in bundle["entry"]:
        req = e["request"]
        if req["method"] == "PUT" and "?" in req["url"]:
            kind, query = req["url"].split("?", 1)
            params = dict(parse_qsl(query))
            if set(params) == {"identifier"} and "|" in params["identifier"]:
                system, value = params["identifier"].split("|", 1)
                batched.setdefault((kind, system), []).append(value)
    ids = {
        (kind, system, value): rid
        for (kind, system), values in batched.items()
        for value, rid in _search_many(http, base, kind, system, values, headers).items()
    }
    entries = []
    for e in bundle["entry"]:
        req = dict(e["request"])
        kind = e["resource"]["resourceType"]
        if req["method"] == "POST" and req.get("ifNoneExist"):
            rid = _search_one(http, base, kind, req["ifNoneExist"], headers)
            if rid is not None:
                found[e["fullUrl"]] = f"{kind}/{rid}"
                continue  # exists: referred to, not sent
            req.pop("ifNoneExist")
        elif req["method"] == "PUT" and "?" in req["url"]:
            query = req["url"].split("?", 1)[1]
            params = dict(parse_qsl(query))
            system, _, value = params.get("identifier", "").partition("|")
            rid = (
                ids.get((kind, system, value))
                if (kind, system) in batched
                else _search_one(http, base, kind, query, headers)
            )
            if rid is not None:
                req = {"method": "PUT", "url": f"{kind}/{rid}"}
                e = {**e, "resource": {**e["resource"], "id": rid}}
            else:
                req = {"method": "POST", "url": kind}
        entries.append({**e, "request": req})
    text = json.dumps({**bundle, "entry": entries})
    for url, ref in found.items():
        text = text.replace(json.dumps(url), json.dumps(ref))
    return dict(json.loads(text))


def _outcome_text(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:2000]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return json.dumps(body)[:8000]
    return r.text[:2000]


def post_transaction(cfg: dict[str, Any], secrets: dict[str, str], bundle: dict[str, Any]) -> SendResult:
    base = str(cfg["base_url"]).rstrip("/")
    ca = str(cfg.get("ca_file") or "")
    with _tokens_lock:
        if ca not in _contexts:
            _contexts[ca] = ssl.create_default_context(cafile=ca or None)
        verify = _contexts[ca]
    with httpx.Client(timeout=float(cfg.get("timeout_s", 30.0)), verify=verify) as http:
        try:
            headers = _headers(http, cfg, secrets)
            if cfg.get("conditional") == "client":
                bundle = resolve_conditionals(http, base, bundle, headers)
            r = http.post(f"{base}/", content=json.dumps(bundle).encode("utf-8"), headers=headers)
            if r.status_code == 401 and cfg.get("auth") == "client_credentials":
                headers = _headers(http, cfg, secrets, fresh=True)
                r = http.post(f"{base}/", content=json.dumps(bundle).encode("utf-8"), headers=headers)
        except TokenError as exc:
            return SendResult(delivered=False, retry=exc.retry, status="token", text=str(exc))
        except httpx.HTTPStatusError as exc:  # a search of conditional: client
            r = exc.response
            return SendResult(
                delivered=False, retry=r.status_code >= 500, status=f"HTTP {r.status_code}", text=_outcome_text(r)
            )
        except ValueError as exc:
            return SendResult(delivered=False, retry=False, status="ambiguous", text=str(exc))
        except httpx.HTTPError as exc:
            return SendResult(delivered=False, retry=True, text=f"cannot reach {base} ({type(exc).__name__})")
    status = f"HTTP {r.status_code}"
    if 200 <= r.status_code < 300:
        try:
            answer = r.json()
            responses = [e.get("response", {}) for e in answer.get("entry", [])]
        except (ValueError, AttributeError):
            return SendResult(delivered=False, retry=True, status=status, text="not a transaction-response Bundle")
        bad = [x for x in responses if not str(x.get("status", "")).startswith("2")]
        if bad:
            return SendResult(delivered=False, retry=False, status=status, text=json.dumps(bad)[:8000])
        locations = [str(x.get("location", "")) for x in responses if x.get("location")]
        return SendResult(delivered=True, status=status, text=" ".join(locations)[:8000] or None)
    retry = r.status_code in (408, 429) or r.status_code >= 500
    return SendResult(delivered=False, retry=retry, status=status, text=_outcome_text(r))


def send(payload: Payload) -> SendResult:
    """The outbox's ``fhir`` sender."""
    return post_transaction(payload.config, payload.secrets, json.loads(payload.body))


__all__ = ["post_transaction", "resolve_conditionals", "send"]
