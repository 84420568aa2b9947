"""Resumable archive uploads (tus-like): create, append chunks at an offset, seal, announce.

State lives in the `uploads` table (offset, chunk count) and, for speed, in this process
(hash and tail); another replica or a restart rebuilds it from the stored chunks. A Redis lock
keeps two requests from appending to the same upload at once.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from nats.errors import Error as NatsError

from hqx.errors import Reason
from services.gateway.errors import ApiError
from services.gateway.object_writer import CHUNK_SIZE, ObjectWriter, WriteState

log = logging.getLogger(__name__)
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
MIN_ZIP = 22
LOCK_TTL_MS = 120_000
DB_EVERY_CHUNKS = 64

# Per-process write states of uploads being received here (hash + tail: ~200 KB each).
_live: dict[str, WriteState] = {}


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_active: int


def _columns() -> str:
    return 'id, user_id, object_name, nuid, size, "offset", chunks, slimmed, state, reason, sha256'


_INSERT = (
    "insert into uploads (id, user_id, object_name, nuid, size, slimmed)"
    ' values ($1, $2, $3, $4, $5, $6) returning id, user_id, object_name, nuid, size, "offset",'
    " chunks, slimmed, state, reason, sha256"
)


async def create(
    pool: asyncpg.Pool, writer: ObjectWriter, user_id: str, size: int, slimmed: bool, lim: Limits
) -> asyncpg.Record:
    if size > lim.max_bytes:
        raise ApiError(
            Reason.TOO_LARGE, f"archives are limited to {lim.max_bytes // 1024**2} MB", 413
        )
    if size < MIN_ZIP:
        raise ApiError(Reason.UPLOAD_INVALID, "this file is too small to be an X archive", 422)
    upload_id = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(hashtext($1))", user_id)
        active = await conn.fetchrow(
            "select count(*) n, coalesce(sum(size), 0) total from uploads"
            " where user_id = $1 and state = 'receiving'",
            user_id,
        )
        if active["n"] >= lim.max_active:
            raise ApiError(
                Reason.TOO_MANY_REQUESTS, "finish or cancel your other uploads first", 429
            )
        if active["total"] + size > lim.max_bytes:
            raise ApiError(Reason.TOO_LARGE, "your uploads in progress exceed your quota", 413)
        row = await conn.fetchrow(
            _INSERT,
            upload_id,
            user_id,
            f"{user_id}/{upload_id}",
            writer.new_nuid(),
            size,
            slimmed,
        )
    # A new upload has no chunks yet: this process knows its state without asking the store.
    _live[row["id"]] = WriteState()
    return row


async def get(pool: asyncpg.Pool, user_id: str, upload_id: str) -> asyncpg.Record:
    """The upload, only if it belongs to this user (another user's id is simply not found)."""
    row = await pool.fetchrow(
        f"select {_columns()} from uploads where id = $1 and user_id = $2",  # noqa: S608
        upload_id,
        user_id,
    )
    if row is None:
        raise ApiError(Reason.NOT_FOUND, "no such upload", 404)
    return row


async def state_of(writer: ObjectWriter, row: asyncpg.Record) -> WriteState:
    """The exact stored state: this process's copy, else rebuilt from the stored chunks."""
    st = _live.get(row["id"])
    if st is None:
        st = await writer.replay(row["nuid"])
        _live[row["id"]] = st
    return st


class _Lock:
    def __init__(self, redis: aioredis.Redis, upload_id: str) -> None:
        self.redis, self.key, self.value = (
            redis,
            f"hqx:upload-lock:{upload_id}",
            secrets.token_hex(8),
        )

    async def __aenter__(self) -> _Lock:
        if not await self.redis.set(self.key, self.value, nx=True, px=LOCK_TTL_MS):
            raise ApiError(Reason.UPLOAD_INVALID, "this upload is already being sent", 409)
        return self

    async def refresh(self) -> None:
        await self.redis.pexpire(self.key, LOCK_TTL_MS)

    async def __aexit__(self, *exc: object) -> None:
        if (await self.redis.get(self.key)) == self.value.encode():
            await self.redis.delete(self.key)


async def append(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    writer: ObjectWriter,
    row: asyncpg.Record,
    client_offset: int,
    body: AsyncIterator[bytes],
) -> WriteState:
    """Append the body at `client_offset`. A broken connection keeps what was stored."""
    if row["state"] != "receiving":
        done = row["state"] in ("received", "unpacked")
        msg = "this upload is already complete" if done else "this upload was refused: start again"
        raise ApiError(Reason.UPLOAD_INVALID, msg, 409)
    async with _Lock(redis, row["id"]) as lock:
        st = await state_of(writer, row)
        if client_offset != st.offset:
            raise ApiError(Reason.UPLOAD_INVALID, f"resume from offset {st.offset}", 409)
        buf = bytearray()
        try:
            async for piece in body:
                if st.offset + len(buf) + len(piece) > row["size"]:
                    await _fail(pool, writer, row, Reason.TOO_LARGE)
                    raise ApiError(Reason.TOO_LARGE, "more bytes than announced", 413)
                buf += piece
                while len(buf) >= CHUNK_SIZE:
                    await _store(pool, writer, row, st, bytes(buf[:CHUNK_SIZE]), lock)
                    del buf[:CHUNK_SIZE]
            if buf:
                await _store(pool, writer, row, st, bytes(buf), lock)
        finally:
            await _save_offset(pool, row["id"], st)
    return st


async def _store(
    pool: asyncpg.Pool,
    writer: ObjectWriter,
    row: asyncpg.Record,
    st: WriteState,
    data: bytes,
    lock: _Lock,
) -> None:
    if st.offset == 0 and not data.startswith(ZIP_MAGICS):
        await _fail(pool, writer, row, Reason.NOT_A_ZIP)
        raise ApiError(Reason.NOT_A_ZIP, "this file is not a zip archive", 415)
    try:
        await writer.append(row["nuid"], st, data)
    except (NatsError, TimeoutError) as e:
        # NOTE: the chunk may be stored without our knowing (ack lost): forget this process's
        # state so the next request rebuilds the exact offset from the store.
        _live.pop(row["id"], None)
        log.warning("chunk not stored", extra={"upload_id": row["id"], "error": type(e).__name__})
        raise ApiError(
            Reason.NETWORK_UNAVAILABLE, "storage is busy or full: resume in a moment", 503
        ) from e
    if st.chunks % DB_EVERY_CHUNKS == 0:
        await _save_offset(pool, row["id"], st)
        await lock.refresh()


async def _save_offset(pool: asyncpg.Pool, upload_id: str, st: WriteState) -> None:
    await pool.execute(
        'update uploads set "offset" = $2, chunks = $3, updated_at = now()'
        " where id = $1 and state = 'receiving'",
        upload_id,
        st.offset,
        st.chunks,
    )


async def _fail(pool: asyncpg.Pool, writer: ObjectWriter, row: asyncpg.Record, reason: str) -> None:
    _live.pop(row["id"], None)
    await writer.discard(row["nuid"])
    await pool.execute(
        "update uploads set state = 'failed', reason = $2, updated_at = now() where id = $1",
        row["id"],
        reason,
    )


def has_end_record(tail: bytes) -> bool:
    """True when the bytes end with a zip end-of-central-directory record (not truncated)."""
    pos = tail.rfind(b"PK\x05\x06")
    while pos != -1:
        if len(tail) - pos >= 22:
            comment = int.from_bytes(tail[pos + 20 : pos + 22], "little")
            if pos + 22 + comment == len(tail):
                return True
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    return False


async def seal(
    pool: asyncpg.Pool, writer: ObjectWriter, row: asyncpg.Record, st: WriteState
) -> str:
    """All bytes are in: check the zip ends well, publish the object meta; returns sha256 hex."""
    if not has_end_record(bytes(st.tail)):
        await _fail(pool, writer, row, Reason.TRUNCATED)
        raise ApiError(Reason.TRUNCATED, "the archive is incomplete (truncated zip)", 422)
    await writer.seal(row["object_name"], row["nuid"], st)
    sha = st.hasher.hexdigest()
    await pool.execute(
        "update uploads set state = 'received', sha256 = $2, \"offset\" = $3, chunks = $4,"
        " updated_at = now() where id = $1",
        row["id"],
        sha,
        st.offset,
        st.chunks,
    )
    _live.pop(row["id"], None)
    return sha


async def cancel(pool: asyncpg.Pool, writer: ObjectWriter, row: asyncpg.Record) -> None:
    if row["state"] == "receiving":
        await _fail(pool, writer, row, "cancelled")
