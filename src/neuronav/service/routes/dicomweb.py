"""DICOMweb (``/dicomweb``): QIDO-RS search, WADO-RS retrieve and metadata, STOW-RS store (PS3.18).

Thin: each route parses the request, calls one function of :mod:`neuronav.workflow.dicomweb` (which
applies the roles and audits) and shapes the answer. Authentication is the API's (a bearer token or
the session cookie); an OHIF-style client (``dicomweb-client``) is pointed at ``<server>/dicomweb``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as FastApiPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from neuronav.integrations.dicomweb import related_content_type, split_related, write_related
from neuronav.integrations.dicomweb.multipart import new_boundary, parse_content_type
from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.service.deps import (
    AuthFirstRoute,
    DbDep,
    Offset,
    SettingsDep,
    StoreDep,
    UnsupportedMediaTypeError,
    requires,
)
from neuronav.workflow import dicomweb
from neuronav.workflow.uploads import private_tmp, remove_tmp

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"], route_class=AuthFirstRoute)

Reader = Annotated[Actor, Depends(requires(Permission.STUDY_READ))]
Uploader = Annotated[Actor, Depends(requires(Permission.STUDY_UPLOAD))]
DICOM_JSON = "application/dicom+json"
JSON_LIST: dict[int | str, dict[str, Any]] = {
    200: {"content": {DICOM_JSON: {"schema": {"type": "array", "items": {"type": "object"}}}}}
}
MULTIPART: dict[int | str, dict[str, Any]] = {
    200: {"content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}}}
}
UID = r"^[0-9]+(\.[0-9]+)*$"
UidQuery = Annotated[str | None, Query(max_length=64, pattern=UID)]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


def dicom_json(data: list[dict[str, Any]] | dict[str, Any]) -> JSONResponse:
    return JSONResponse(data, media_type=DICOM_JSON)


def multipart(held: dicomweb.Retrieved) -> StreamingResponse:
    boundary = new_boundary()
    return StreamingResponse(
        write_related([i.path for i in held.instances], boundary),
        media_type=related_content_type(boundary),
        background=BackgroundTask(held.close),
    )


@router.get("/studies", response_class=JSONResponse, responses=JSON_LIST)
def search_studies(
    user: Reader,
    db: DbDep,
    store: StoreDep,
    settings: SettingsDep,
    StudyInstanceUID: UidQuery = None,
    PatientID: Annotated[str | None, Query(max_length=64)] = None,
    AccessionNumber: Annotated[str | None, Query(max_length=16)] = None,
    StudyDate: Annotated[str | None, Query(max_length=17, pattern=r"^\d{8}$|^\d{8}?-\d{8}?$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    offset: Offset = 0,
) -> JSONResponse:
    """QIDO-RS: the studies the caller may read, newest first, matching the given attributes (exact;
    StudyDate also ``from-to``), as DICOM JSON with the patient's identity."""
    given = {"StudyInstanceUID": StudyInstanceUID, "PatientID": PatientID, "AccessionNumber": AccessionNumber}
    filters = {k: v for k, v in {**given, "StudyDate": StudyDate}.items() if v}
    return dicom_json(dicomweb.search_studies(db, store, settings, user, filters, limit, offset))


@router.get("/studies/{study}/series", response_class=JSONResponse, responses=JSON_LIST)
def search_series(
    request: Request, user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str
) -> JSONResponse:
    """QIDO-RS: the series of a study (with the AI results' SEG, SR and PDF series for readers of them)."""
    return dicom_json(dicomweb.search_series(db, store, settings, user, base_url(request), study))


@router.get("/studies/{study}/instances", response_class=JSONResponse, responses=JSON_LIST)
def search_study_instances(
    request: Request, user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str
) -> JSONResponse:
    """QIDO-RS: the instances of a study."""
    return dicom_json(dicomweb.search_instances(db, store, settings, user, base_url(request), study))


@router.get("/studies/{study}/series/{series}/instances", response_class=JSONResponse, responses=JSON_LIST)
def search_series_instances(
    request: Request, user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str, series: str
) -> JSONResponse:
    """QIDO-RS: the instances of one series."""
    return dicom_json(dicomweb.search_instances(db, store, settings, user, base_url(request), study, series))


@router.get("/studies/{study}/metadata", response_class=JSONResponse, responses=JSON_LIST)
def study_metadata(
    request: Request, user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str
) -> JSONResponse:
    """WADO-RS: every instance's attributes as DICOM JSON (pixel data by reference to the instance)."""
    return dicom_json(dicomweb.metadata(db, store, settings, user, base_url(request), study))


@router.get("/studies/{study}/series/{series}/metadata", response_class=JSONResponse, responses=JSON_LIST)
def series_metadata(
    request: Request, user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str, series: str
) -> JSONResponse:
    """WADO-RS: the attributes of a series' instances as DICOM JSON."""
    return dicom_json(dicomweb.metadata(db, store, settings, user, base_url(request), study, series))


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/metadata", response_class=JSONResponse, responses=JSON_LIST
)
def instance_metadata(
    request: Request,
    user: Reader,
    db: DbDep,
    store: StoreDep,
    settings: SettingsDep,
    study: str,
    series: str,
    instance: str,
) -> JSONResponse:
    """WADO-RS: one instance's attributes as DICOM JSON."""
    return dicom_json(dicomweb.metadata(db, store, settings, user, base_url(request), study, series, instance))


@router.get("/studies/{study}", response_class=StreamingResponse, responses=MULTIPART)
def retrieve_study(user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str) -> StreamingResponse:
    """WADO-RS: every instance of a study (multipart/related; type="application/dicom")."""
    return multipart(dicomweb.retrieve(db, store, settings, user, study))


@router.get("/studies/{study}/series/{series}", response_class=StreamingResponse, responses=MULTIPART)
def retrieve_series(
    user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str, series: str
) -> StreamingResponse:
    """WADO-RS: every instance of a series."""
    return multipart(dicomweb.retrieve(db, store, settings, user, study, series))


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}", response_class=StreamingResponse, responses=MULTIPART
)
def retrieve_instance(
    user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str, series: str, instance: str
) -> StreamingResponse:
    """WADO-RS: one instance."""
    return multipart(dicomweb.retrieve(db, store, settings, user, study, series, instance))


RENDERED: dict[int | str, dict[str, Any]] = {
    200: {"content": {t: {"schema": {"type": "string", "format": "binary"}} for t in dicomweb.RENDERED_TYPES}}
}


def _rendered(
    request: Request, db: Any, store: Any, settings: Any, user: Actor, ids: tuple[str, str, str], frame: int
) -> Response:
    media_type = dicomweb.rendered_type(request.headers.get("accept"))
    if media_type is None:
        raise HTTPException(406, f"a rendered image is one of {', '.join(dicomweb.RENDERED_TYPES)}")
    data = dicomweb.rendered(db, store, settings, user, *ids, frame, media_type)
    return Response(data, media_type=media_type)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/rendered", response_class=Response, responses=RENDERED
)
def rendered_instance(
    request: Request, user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str, series: str,
    instance: str,
) -> Response:  # fmt: skip
    """WADO-RS rendered: the instance's first frame as JPEG (default) or PNG (Accept), its own window."""
    return _rendered(request, db, store, settings, user, (study, series, instance), 1)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
    response_class=Response,
    responses=RENDERED,
)
def rendered_frame(
    request: Request, user: Reader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str, series: str,
    instance: str, frame: Annotated[int, FastApiPath(ge=1, le=100000)],
) -> Response:  # fmt: skip
    """WADO-RS rendered: one frame (1-based) as JPEG (default) or PNG (Accept), the instance's own window."""
    return _rendered(request, db, store, settings, user, (study, series, instance), frame)


async def _store(request: Request, user: Actor, db: Any, store: Any, settings: Any, study: str | None) -> JSONResponse:
    content_type = request.headers.get("content-type", "")
    if parse_content_type(content_type)[0] != "multipart/related":
        raise UnsupportedMediaTypeError(
            'STOW-RS takes multipart/related; type="application/dicom" (one part per instance), '
            f"not {content_type.split(';')[0] or 'a body without a content type'}"
        )
    folder = private_tmp(settings, "stow-")
    try:
        body = folder / "body"
        with open(body, "wb") as fh:
            async for chunk in request.stream():
                fh.write(chunk)
        parts_dir = folder / "parts"
        parts_dir.mkdir()
        parts = await run_in_threadpool(split_related, body, content_type, parts_dir)
        body.unlink()
        _received, answer = await run_in_threadpool(
            dicomweb.store_instances, db, store, settings, user, base_url(request), parts, study
        )
    finally:
        remove_tmp(folder)
    return JSONResponse(answer, media_type=DICOM_JSON, status_code=200)


STOW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("/studies", response_class=JSONResponse, openapi_extra=STOW_BODY)
async def store_study(
    request: Request, user: Uploader, db: DbDep, store: StoreDep, settings: SettingsDep
) -> JSONResponse:
    """STOW-RS: the instances of ONE study (multipart/related; type="application/dicom"), received as an
    upload is: validated whole, stored encrypted, analysed. Answers the stored instances as DICOM JSON."""
    return await _store(request, user, db, store, settings, None)


@router.post("/studies/{study}", response_class=JSONResponse, openapi_extra=STOW_BODY)
async def store_into_study(
    request: Request, user: Uploader, db: DbDep, store: StoreDep, settings: SettingsDep, study: str
) -> JSONResponse:
    """STOW-RS into a given study: every instance must belong to it."""
    return await _store(request, user, db, store, settings, study)
