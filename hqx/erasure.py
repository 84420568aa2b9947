"""Erasing one person from every store: PostgreSQL rows, Redis keys, stream messages, objects.

Nothing here relies on a list of known places: tables are discovered from the catalog (every
`user_id` column and every foreign key to `users`), Redis keys and values are scanned (only
the values under `OPAQUE_VALUES`, which never name a person, are skipped), every
JetStream stream is visited (hqx streams by the user's subject filters, object-store buckets by
object name, any other stream by subject and payload). Each function is idempotent and safe to
run concurrently with itself; each returns counts per kind of data, never the data.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from hqx.db import lock_graph, user_hash
from hqx.subjects import ARCHIVE_BUCKET, Stream, check_user_id, user_filters

log = logging.getLogger(__name__)

_OBJ_PREFIX = "OBJ_"
ARCHIVE_STREAM = _OBJ_PREFIX + ARCHIVE_BUCKET  # the stream behind the raw-archive bucket
_DLQ_UNKNOWN_USER = "hqx.dlq.*._"


def mentions(user_id: str) -> Callable[[bytes | str], bool]:
    """A test for "this text names the user": the id as a whole token, so erasing `u1` never
    touches `u12`'s data."""
    token = re.escape(check_user_id(user_id).encode())
    rx = re.compile(rb"(?<![A-Za-z0-9_-])" + token + rb"(?![A-Za-z0-9_-])")
    return lambda text: rx.search(text if isinstance(text, bytes) else text.encode()) is not None


async def tombstone(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> bool:
    """Record the erase FIRST: from now on `hqx.db.is_erased` refuses late messages everywhere,
    and the users trigger (0006) refuses to recreate the row. True if newly recorded."""
    tag = await conn.fetchval(
        "insert into erased_users (user_hash) values ($1) on conflict do nothing returning 1",
        user_hash(check_user_id(user_id)),
    )
    return tag is not None


# --- PostgreSQL -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserColumn:
    schema: str
    table: str
    column: str

    @property
    def kind(self) -> str:
        return self.table if self.schema == "public" else f"{self.schema}.{self.table}"

    def delete_sql(self) -> str:
        # Identifiers come from the catalog, quoted; the user id is a bound parameter.
        table, col = f"{ident(self.schema)}.{ident(self.table)}", ident(self.column)
        return f"delete from {table} where {col}::text = $1"  # noqa: S608


def ident(name: str) -> str:
    """A catalog name quoted as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


_USER_COLUMNS_SQL = """
select c.table_schema, c.table_name, c.column_name
  from information_schema.columns c
  join information_schema.tables t
    on t.table_schema = c.table_schema and t.table_name = c.table_name
 where c.column_name = 'user_id' and t.table_type = 'BASE TABLE'
   and c.table_schema not in ('pg_catalog', 'information_schema')
union
select ns.nspname, cl.relname, a.attname
  from pg_constraint k
  join pg_class cl on cl.oid = k.conrelid
  join pg_namespace ns on ns.oid = cl.relnamespace
  join pg_attribute a on a.attrelid = k.conrelid and a.attnum = any (k.conkey)
 where k.contype = 'f' and k.confrelid = 'public.users'::regclass
"""


async def user_columns(conn: asyncpg.Connection | asyncpg.Pool) -> list[UserColumn]:
    """Every column holding a user id: named `user_id`, or a foreign key to `users`."""
    rows = await conn.fetch(_USER_COLUMNS_SQL)
    cols = {UserColumn(r[0], r[1], r[2]) for r in rows}
    return sorted(cols, key=lambda c: (c.schema, c.table, c.column))


async def delete_rows(pool: asyncpg.Pool, user_id: str) -> dict[str, int]:
    """Delete the user's rows from every table holding their id, then the users row.

    Children first, so each kind is counted (the cascade from `users` would hide them). One
    transaction under a per-user advisory lock: concurrent replicas serialize, the second finds
    nothing. A foreign key without cascade between two other tables only reorders the deletes.
    """
    counts: dict[str, int] = {}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(hashtext($1))", user_hash(user_id))
        await lock_graph(conn, user_id)  # an ingest in flight finishes first, then goes too
        pending = [c for c in await user_columns(conn) if c.table != "users"]
        for _ in range(len(pending) + 1):
            deferred = []
            for col in pending:
                try:
                    async with conn.transaction():  # savepoint
                        status = await conn.execute(col.delete_sql(), user_id)
                except asyncpg.ForeignKeyViolationError:
                    deferred.append(col)
                    continue
                n = int(status.split()[-1])
                if n:
                    counts[col.kind] = counts.get(col.kind, 0) + n
            if not deferred or len(deferred) == len(pending):
                pending = deferred
                break
            pending = deferred
        if pending:
            raise RuntimeError(f"rows left behind by foreign keys: {[c.kind for c in pending]}")
        n = int((await conn.execute("delete from users where id = $1", user_id)).split()[-1])
        if n:
            counts["users"] = n
    return counts


# --- Redis --------------------------------------------------------------------------------------


async def linked_accounts(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> list[str]:
    """The user's accounts on the networks (DIDs, user@instance): other stores key data by them
    (an adapter's cache of a repo's follows), so an erase looks for them too."""
    rows = await conn.fetch(
        "select account from identities where user_id = $1"
        " union select account from directory where user_id = $1",
        user_id,
    )
    return sorted({r["account"] for r in rows})


async def erase_redis(redis: aioredis.Redis, user_id: str, accounts: Iterable[str] = ()) -> int:
    """Delete every key naming the user (or one of their network `accounts`); remove their
    entries from keys that hold them among others (a set of active users, a hash of states).
    Returns the number of keys deleted or changed.

    NOTE: a full SCAN per erase, values included (a session or OAuth state names the user).
    The scan runs inside Redis, one page per script call, and sends back only the keys whose
    name or value contains a needle; they are then checked exactly here. Reading every key
    name into Python instead made this half of the purger's CPU on exodus day (py-spy) and
    made erasing cost O(all keys) of Python work per person. Values under `OPAQUE_VALUES`
    are not read (their names still are): see there.
    """
    by_id = mentions(user_id)
    names = [a.encode() for a in accounts if len(a) >= 5]

    def hit(text: bytes) -> bool:
        return by_id(text) or any(a in text for a in names)

    scan_page = redis.register_script(_SCAN_FOR_NEEDLES)
    needles = [user_id.encode(), *names]
    changed, cursor = 0, b"0"
    while True:
        args: list[bytes | str | int] = [cursor, 1000, len(OPAQUE_VALUES), *OPAQUE_VALUES, *needles]
        cursor, named, valued = await scan_page(args=args)
        exact: list[bytes] = []
        inexact: list[bytes] = list(valued)
        for k in named:
            (exact if hit(_b(k)) else inexact).append(k)
        if exact:
            changed += int(await redis.delete(*exact))
        for key in inexact:
            changed += await _erase_from_value(redis, _b(key), hit)
        if _b(cursor) == b"0":
            return changed


# Key prefixes whose values never name a person, so an erase reads only their names (the
# network account in a budget's or a cached lookup's name is still found). They are most of
# the keyspace on exodus day (at a full day's peak, 9 keys in 10 were cached lookups or
# budgets; a follow cache holds a field per follow), and reading each value made an erase pass
# 0.7 s of Redis blocked in 8 ms pages (`python -m bench.erase` measures both forms). Each
# owner's key is checked against this list by tests/hqx/test_erase_redis.py.
OPAQUE_VALUES: tuple[str, ...] = (
    "hqx:budget:",  # hqx.ratelimit: windows, counts, call nonces
    "hqx:mastodon:resolve:",  # public accounts on an instance, keyed by host and handle
    # A repo's follows, mirrored from the public repo for minutes: the people in it are its
    # owner's graph, and the owner's DID names the key.
    "hqx:bluesky:follows:",
    "hqx:failures:",  # hqx.service: delivery counts per stream sequence
    "hqx:unavailable:",  # hqx.backoff: failure streaks per network scope
    "hqx:reqlimit:",  # the gateway's request counts, by hashed caller
)

# One SCAN page: ARGV = cursor, count, n, n opaque prefixes, needles (plain substrings). Returns
# the next cursor, the keys whose name contains a needle and, of the others not under an opaque
# prefix, those holding one in a value. Candidates only: the caller checks each exactly.
# NOTE: keys are not declared (a single Redis, not a cluster).
_SCAN_FOR_NEEDLES = """
local first = 4 + tonumber(ARGV[3])
local function has(v)
  for i = first, #ARGV do
    if string.find(v, ARGV[i], 1, true) then return true end
  end
  return false
end
local function opaque(k)
  for i = 4, first - 1 do
    if string.sub(k, 1, #ARGV[i]) == ARGV[i] then return true end
  end
  return false
end
local page = redis.call('SCAN', ARGV[1], 'COUNT', ARGV[2])
local named, valued = {}, {}
for _, k in ipairs(page[2]) do
  if has(k) then
    named[#named + 1] = k
  elseif not opaque(k) then
    local t = redis.call('TYPE', k).ok
    local vals
    if t == 'string' then vals = {redis.call('GET', k)}
    elseif t == 'hash' then vals = redis.call('HGETALL', k)
    elseif t == 'set' then vals = redis.call('SMEMBERS', k)
    elseif t == 'zset' then vals = redis.call('ZRANGE', k, 0, -1)
    elseif t == 'list' then vals = redis.call('LRANGE', k, 0, -1)
    elseif t == 'stream' then
      vals = {}
      for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do
        for _, f in ipairs(e[2]) do vals[#vals + 1] = f end
      end
    else vals = {} end
    for _, v in ipairs(vals) do
      if has(v) then valued[#valued + 1] = k; break end
    end
  end
end
return {page[1], named, valued}
"""


def _b(v: object) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


async def _erase_from_value(redis: Any, key: bytes, hit: Callable[[bytes], bool]) -> bool:
    # NOTE: `redis: Any`: redis-py's stubs type every reply as str | bytes | list | ...;
    # the client is built without decode_responses, so replies are bytes here.
    kind = _b(await redis.type(key))
    if kind == b"string":
        value = await redis.get(key)
        return value is not None and hit(_b(value)) and bool(await redis.delete(key))
    if kind == b"hash":
        fields = [f for f, v in (await redis.hgetall(key)).items() if hit(_b(f)) or hit(_b(v))]
        return bool(fields) and bool(await redis.hdel(key, *fields))
    if kind == b"set":
        members = [m for m in await redis.smembers(key) if hit(_b(m))]
        return bool(members) and bool(await redis.srem(key, *members))
    if kind == b"zset":
        members = [m for m in await redis.zrange(key, 0, -1) if hit(_b(m))]
        return bool(members) and bool(await redis.zrem(key, *members))
    if kind == b"list":
        items = {v for v in await redis.lrange(key, 0, -1) if hit(_b(v))}
        for v in items:
            await redis.lrem(key, 0, v)
        return bool(items)
    if kind == b"stream":
        ids = [
            i
            for i, fields in await redis.xrange(key)
            if any(hit(_b(f)) or hit(_b(v)) for f, v in fields.items())
        ]
        return bool(ids) and bool(await redis.xdel(key, *ids))
    return False


# --- JetStream: streams and object stores ---------------------------------------------------


async def erase_streams(
    js: JetStreamContext, user_id: str, *, keep_erase: bool = False
) -> dict[str, int]:
    """Delete every message of the user from every stream and every object naming them.

    Returns {"stream_messages": n, "objects": m}. `keep_erase` spares the `user.erase` request
    itself, so other consumers still receive it while the purger lets in-flight work settle;
    the final pass removes it too.
    """
    from hqx.subjects import user_erase

    hit = mentions(user_id)
    spare = user_erase(user_id) if keep_erase else None
    hqx_streams = {s.value for s in Stream}
    messages = objects = 0
    for info in await _all_streams(js):
        name = info.config.name
        if name in hqx_streams:
            for flt in user_filters(user_id):
                messages += await _delete_subjects(js, name, flt, spare)
            if name == Stream.DLQ.value:
                messages += await _erase_unknown_user_letters(js, hit)
        elif name.startswith(_OBJ_PREFIX):
            objects += (await erase_objects(js, name, hit))[1]
        else:
            messages += await _erase_from_foreign_stream(js, name, hit)
    return {"stream_messages": messages, "objects": objects}


async def _all_streams(js: JetStreamContext) -> list:
    out, offset = [], 0
    while True:
        page = await js.streams_info(offset)
        out.extend(page)
        if len(page) == 0 or len(page) < 256:
            return out
        offset += len(page)


async def subject_counts(js: JetStreamContext, stream: str, flt: str) -> dict[str, int]:
    try:
        info = await js.stream_info(stream, subjects_filter=flt)
    except APIError:
        return {}
    return dict(info.state.subjects or {})


async def _delete_subjects(js: JetStreamContext, stream: str, flt: str, spare: str | None) -> int:
    n = 0
    for subject in await subject_counts(js, stream, flt):
        if subject != spare:
            n += await delete_subject(js, stream, subject)
    return n


# What deleting a message another pass (the other purger replica) deleted first answers:
# "no message found" or "sequence N not found", depending on when it lost the race.
_ALREADY_DELETED = {10057, 10043}


async def _delete_msg(js: JetStreamContext, stream: str, seq: int) -> bool:
    """Delete one message; False if it was gone already."""
    try:
        await js.delete_msg(stream, seq)
    except APIError as e:
        if e.err_code in _ALREADY_DELETED:
            return False
        raise
    return True


async def delete_subject(js: JetStreamContext, stream: str, subject: str) -> int:
    """Delete every message on one subject of a stream that consumers read; returns how many.

    NOTE: one by one, never `purge_stream(subject=...)`. A purge by subject empties the
    redelivery queue of every consumer whose filter covers that subject (nats-server 2.15.1,
    `tests/hqx/test_erase_streams.py`): another person's message that was nak'd and is due
    again (a follow batch deferred to its next window, an erase waiting for its final pass)
    then comes back only after its whole ack wait, 120 s on the follow lanes. Deleting by
    sequence leaves consumers alone.
    """
    n = 0
    async for msg in stream_messages(js, stream, subject):
        n += await _delete_msg(js, stream, int(msg.seq))
    return n


async def stream_messages(js: JetStreamContext, stream: str, subject: str):
    """Every stored message on one subject, oldest first."""
    seq = 1
    while True:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return
        yield msg
        seq = int(msg.seq or seq) + 1


async def _erase_unknown_user_letters(js: JetStreamContext, hit: Callable[[bytes], bool]) -> int:
    """Dead letters whose subject could not name a user (unparseable payload) may still hold
    this user's id in the original payload: delete those one by one."""
    n = 0
    for subject in await subject_counts(js, Stream.DLQ.value, _DLQ_UNKNOWN_USER):
        async for msg in stream_messages(js, Stream.DLQ.value, subject):
            data = msg.data or b""
            try:
                original = base64.b64decode(json.loads(data).get("payload_b64", ""))
            except (ValueError, AttributeError):
                original = b""
            if hit(data) or hit(original):
                n += await _delete_msg(js, Stream.DLQ.value, int(msg.seq))
    return n


async def _erase_from_foreign_stream(
    js: JetStreamContext, stream: str, hit: Callable[[bytes], bool]
) -> int:
    """A stream we did not define (a KV bucket, another tool's): purge each subject that names
    the user or carries the user's id in any of its messages (a KV key's history goes too).

    NOTE: a purge, not `delete_subject`: a KV bucket's stream refuses single deletes
    (`deny_delete`), and no hqx consumer acks messages of these streams (a KV read is a get).
    """
    n = 0
    for subject, count in (await subject_counts(js, stream, ">")).items():
        found = hit(subject.encode())
        if not found:
            async for msg in stream_messages(js, stream, subject):
                if hit(msg.data or b""):
                    found = True
                    break
        if found:
            await js.purge_stream(stream, subject=subject)
            n += count
    return n


@dataclass(frozen=True)
class StoredObject:
    """An object-store entry as JetStream holds it: meta subject, name, chunks' nuid, time."""

    bucket: str
    name: str
    nuid: str
    meta_subject: str
    deleted: bool
    mtime: datetime | None  # datetime of the meta message


async def list_objects(js: JetStreamContext, stream: str) -> list[StoredObject]:
    """Every meta entry of an object-store stream, deleted ones included (their meta still names
    the object, so an erase removes them too)."""
    bucket = stream.removeprefix(_OBJ_PREFIX)
    out = []
    for subject in await subject_counts(js, stream, f"$O.{bucket}.M.>"):
        try:
            msg = await js.get_last_msg(stream, subject)
            meta = json.loads(msg.data or b"{}")
        except (NotFoundError, ValueError):
            continue
        out.append(
            StoredObject(
                bucket,
                str(meta.get("name", "")),
                str(meta.get("nuid", "")),
                subject,
                bool(meta.get("deleted")),
                msg.time,
            )
        )
    return out


async def purge_object(js: JetStreamContext, obj: StoredObject) -> None:
    """Remove an object without a trace: chunks and meta (the store's own `delete` would leave a
    meta tombstone that still carries the object's name). A purge by subject is safe here, unlike
    in `delete_subject`: no consumer with acks reads an object store's stream."""
    stream = _OBJ_PREFIX + obj.bucket
    if obj.nuid:
        await js.purge_stream(stream, subject=f"$O.{obj.bucket}.C.{obj.nuid}")
    await js.purge_stream(stream, subject=obj.meta_subject)


def _archive_meta_subject(name: str) -> str:
    # NOTE: the object store's own encoding of names in meta subjects (nats.py and Go alike).
    return f"$O.{ARCHIVE_BUCKET}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


async def purge_archive(js: JetStreamContext, name: str) -> int:
    """Delete one raw archive (chunks and meta, no tombstone left); 0 if it was already gone."""
    subject = _archive_meta_subject(name)
    try:
        msg = await js.get_last_msg(ARCHIVE_STREAM, subject)
        meta = json.loads(msg.data or b"{}")
    except NotFoundError:
        return 0
    obj = StoredObject(
        ARCHIVE_BUCKET,
        name,
        str(meta.get("nuid", "")),
        subject,
        bool(meta.get("deleted")),
        msg.time,
    )
    await purge_object(js, obj)
    return int(not obj.deleted)


async def erase_objects(
    js: JetStreamContext, stream: str, select: Callable[[str], bool]
) -> tuple[int, int]:
    """Purge the objects whose name `select` accepts; returns (live objects, entries) removed."""
    live = entries = 0
    for obj in await list_objects(js, stream):
        if select(obj.name):
            await purge_object(js, obj)
            entries += 1
            live += not obj.deleted
    return live, entries
