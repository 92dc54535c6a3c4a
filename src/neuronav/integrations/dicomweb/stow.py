"""STOW-RS client: the outbox's ``dicomweb`` sender (PS3.18 10.5, Store Transaction).

:func:`send` POSTs the files rendered for a delivery to ``{base_url}/studies`` as one
``multipart/related; type="application/dicom"`` body (:mod:`.multipart`), with the destination's
authentication (``none``, ``basic``: ``username`` and the secret ``password``; ``bearer``: the secret
``token``), and reads the answer as PS3.18 describes it:

======================================  ==========  =============================================
answer                                  outcome     why
======================================  ==========  =============================================
200 (every instance stored)             delivered
202 with a Failed SOP Sequence          failed      some instances were refused (their reasons kept)
202 without one (warnings only)         delivered
409 / 400 / 401 / 403 / 404 / 415 …     failed      sending it again will not help: an admin looks
408, 429, 5xx, no answer                retry
======================================  ==========  =============================================
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from neuronav.integrations.dicomweb.multipart import new_boundary, related_content_type, write_related
from neuronav.integrations.outbox import SendResult
from neuronav.workflow.deliveries import Payload

FAILED_SOP_SEQUENCE = "00081198"
FAILURE_REASON = "00081197"
REFERENCED_SOP_INSTANCE_UID = "00081155"


def _headers(cfg: dict[str, Any], secrets: dict[str, str], boundary: str) -> tuple[dict[str, str], Any]:
    headers = {"Content-Type": related_content_type(boundary), "Accept": "application/dicom+json"}
    auth: Any = None
    if cfg.get("auth") == "bearer":
        headers["Authorization"] = f"Bearer {secrets.get('token', '')}"
    elif cfg.get("auth") == "basic":
        auth = httpx.BasicAuth(str(cfg.get("username", "")), secrets.get("password", ""))
    return headers, auth


def _failed(answer: Any) -> list[str]:
    """'UID: reason 0xNNNN' for each instance of the answer's Failed SOP Sequence."""
    if not isinstance(answer, dict):
        return []
    items = answer.get(FAILED_SOP_SEQUENCE, {}).get("Value", []) or []
    out = []
    for item in items:
        uid = (item.get(REFERENCED_SOP_INSTANCE_UID, {}).get("Value") or ["?"])[0]
        reason = (item.get(FAILURE_REASON, {}).get("Value") or [None])[0]
        out.append(f"{uid}: reason 0x{int(reason):04X}" if isinstance(reason, int) else f"{uid}: refused")
    return out


def store(cfg: dict[str, Any], secrets: dict[str, str], files: list[Path]) -> SendResult:
    """STOW-RS ``files`` to the endpoint ``cfg`` describes (module docstring)."""
    base = str(cfg["base_url"]).rstrip("/")
    boundary = new_boundary()
    headers, auth = _headers(cfg, secrets, boundary)
    body = b"".join(write_related(files, boundary))
    ca = str(cfg.get("ca_file") or "")
    verify: Any = ssl.create_default_context(cafile=ca) if ca else True
    try:
        with httpx.Client(timeout=float(cfg.get("timeout_s", 60.0)), verify=verify) as http:
            r = http.post(f"{base}/studies", content=body, headers=headers, auth=auth)
    except httpx.HTTPError as exc:
        return SendResult(delivered=False, retry=True, text=f"cannot reach {base} ({type(exc).__name__})")
    status = f"HTTP {r.status_code}"
    try:
        answer = r.json() if r.content else None
    except ValueError:
        answer = None
    failed = _failed(answer)
    if r.status_code in (200, 202) and not failed:
        return SendResult(delivered=True, status=status, text=f"{len(files)} instances stored")
    if failed:
        return SendResult(delivered=False, retry=False, status=status, text="; ".join(failed)[:8000])
    retry = r.status_code in (408, 429) or r.status_code >= 500
    return SendResult(delivered=False, retry=retry, status=status, text=r.text[:2000] or None)


def send(payload: Payload) -> SendResult:
    """The outbox's ``dicomweb`` sender."""
    return store(payload.config, payload.secrets, list(payload.extra["files"]))


__all__ = ["send", "store"]
