"""Resumable archive uploads (tus-like): POST to create, PATCH chunks at an offset, HEAD/GET state.

Bytes stream from the request straight into the object store, 128 KB at a time: nothing is
buffered whole in memory or written to local disk.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, Field

from hqx import metrics, subjects
from hqx.errors import HqxError, Reason
from hqx.messages import ArchiveUploaded
from services.gateway import accounts, events, uploads
from services.gateway.deps import CurrentUser, SettingsDep, SvcDep
from services.gateway.errors import ApiError
from services.gateway.object_writer import ObjectWriter

router = APIRouter(prefix="/api/uploads", tags=["uploads"])
CHUNK_TYPES = ("application/offset+octet-stream", "application/octet-stream")


class UploadIn(BaseModel):
    size: int = Field(ge=0, le=2**50, description="total bytes of the zip (Upload-Length)")
    slimmed: bool = Field(False, description="the page kept only the files that matter")


class UploadOut(BaseModel):
    id: str
    offset: int
    size: int
    state: str
    reason: str | None = None


def _out(row: dict, offset: int | None = None) -> UploadOut:
    return UploadOut(
        id=row["id"],
        offset=row["offset"] if offset is None else offset,
        size=row["size"],
        state=row["state"],
        reason=row["reason"],
    )


def _headers(response: Response, out: UploadOut) -> None:
    response.headers["Upload-Offset"] = str(out.offset)
    response.headers["Upload-Length"] = str(out.size)
    response.headers["Cache-Control"] = "no-store"


async def _writer(svc: SvcDep) -> ObjectWriter:
    return ObjectWriter(await svc.archives())


@router.post("", response_model=UploadOut, status_code=201)
async def create_upload(
    body: UploadIn, response: Response, user: CurrentUser, svc: SvcDep, settings: SettingsDep
) -> UploadOut:
    limits = uploads.Limits(settings.upload_max_bytes, settings.user_max_active_uploads)
    try:
        row = await uploads.create(
            svc.pool, await _writer(svc), user, body.size, body.slimmed, limits
        )
    except HqxError as e:
        events.upload_refused(e.code.value)
        raise
    out = _out(row)
    response.headers["Location"] = f"/api/uploads/{out.id}"
    _headers(response, out)
    return out


@router.get("/{upload_id}", response_model=UploadOut)
async def get_upload(
    upload_id: str, response: Response, user: CurrentUser, svc: SvcDep
) -> UploadOut:
    """Where to resume: the exact stored offset (rebuilt from the store if needed)."""
    row = await uploads.get(svc.pool, user, upload_id)
    offset = row["offset"]
    if row["state"] == "receiving":
        offset = (await uploads.state_of(await _writer(svc), row)).offset
    out = _out(row, offset)
    _headers(response, out)
    return out


@router.patch(
    "/{upload_id}",
    response_model=UploadOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/offset+octet-stream": {
                    "schema": {"type": "string", "format": "binary"}
                }
            },
        }
    },
)
async def append_chunk(
    upload_id: str,
    request: Request,
    response: Response,
    user: CurrentUser,
    svc: SvcDep,
    upload_offset: Annotated[int, Header(ge=0)],
    content_type: Annotated[str, Header()] = "",
) -> UploadOut:
    """Append bytes at `Upload-Offset`; when the last byte is in, the archive is announced."""
    if content_type.split(";")[0].strip().lower() not in CHUNK_TYPES:
        raise ApiError(Reason.UPLOAD_INVALID, "send chunks as application/offset+octet-stream", 415)
    row = await uploads.get(svc.pool, user, upload_id)
    writer = await _writer(svc)
    try:
        st = await uploads.append(svc.pool, svc.redis, writer, row, upload_offset, request.stream())
        if st.offset == row["size"]:
            sha = await uploads.seal(svc.pool, writer, row, st)
            await _announce(svc, user, row, sha)
    except HqxError as e:
        if e.code != Reason.UPLOAD_INVALID:
            events.upload_refused(e.code.value)
        raise
    row = await uploads.get(svc.pool, user, upload_id)
    out = _out(row, st.offset)
    _headers(response, out)
    return out


async def _announce(svc: SvcDep, user: str, row: dict, sha: str) -> None:
    me = await accounts.get_user(svc.pool, user)
    proven = str(me["x_account_id"]) if me and me["x_proven"] else None
    await svc.publish(
        subjects.archive_uploaded(user),
        ArchiveUploaded(
            user_id=user,
            object_name=row["object_name"],
            size=row["size"],
            sha256=sha,
            slimmed=row["slimmed"],
            proven_x_account_id=proven,
        ),
        msg_id=f"upload-{row['id']}",
    )
    metrics.ARCHIVES_UPLOADED.labels(str(row["slimmed"]).lower()).inc()
    events.upload_received(row["slimmed"])


@router.delete("/{upload_id}", status_code=204)
async def cancel_upload(upload_id: str, user: CurrentUser, svc: SvcDep) -> Response:
    row = await uploads.get(svc.pool, user, upload_id)
    await uploads.cancel(svc.pool, await _writer(svc), row)
    return Response(status_code=204)
