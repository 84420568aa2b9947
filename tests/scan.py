"""Scan every store for a string: all tables and columns, all Redis keys and values, every
message of every stream (subject, headers, payload, dead letters' original payloads), every
object of every bucket. Nothing here lists known places: it enumerates what the servers hold.

`await scan(pool, redis, js, user_id)` returns where the string was found, e.g.
`["pg:graph_edges.user_id", "redis:hqx:progress:u1", "stream:EVENTS#4 hqx.graph.ingested.u1"]`.
"""

from __future__ import annotations

import base64
import json

import asyncpg
import redis.asyncio as aioredis
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

_COLUMNS = """
select c.table_schema, c.table_name, c.column_name, c.data_type
  from information_schema.columns c
  join information_schema.tables t
    on t.table_schema = c.table_schema and t.table_name = c.table_name
 where t.table_type = 'BASE TABLE'
   and c.table_schema not in ('pg_catalog', 'information_schema')
 order by 1, 2, 3
"""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def scan_postgres(pool: asyncpg.Pool, needle: str) -> list[str]:
    found = []
    for schema, table, column, data_type in await pool.fetch(_COLUMNS):
        col = _q(column)
        if data_type == "bytea":
            cond = f"position(convert_to($1, 'UTF8') in {col}) > 0"
        else:
            cond = f"strpos({col}::text, $1) > 0"
        sql = f"select count(*) from {_q(schema)}.{_q(table)} where {cond}"
        if await pool.fetchval(sql, needle):
            where = table if schema == "public" else f"{schema}.{table}"
            found.append(f"pg:{where}.{column}")
    return found


def _b(v: object) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


async def scan_redis(redis: aioredis.Redis, needle: str) -> list[str]:
    n = needle.encode()
    found = []
    async for key in redis.scan_iter(match="*", count=1000):
        kind = _b(await redis.type(key))
        parts: list[bytes] = [_b(key)]
        if kind == b"string":
            parts.append(_b(await redis.get(key)))
        elif kind == b"hash":
            for f, v in (await redis.hgetall(key)).items():
                parts += [_b(f), _b(v)]
        elif kind == b"set":
            parts += [_b(m) for m in await redis.smembers(key)]
        elif kind == b"zset":
            parts += [_b(m) for m in await redis.zrange(key, 0, -1)]
        elif kind == b"list":
            parts += [_b(v) for v in await redis.lrange(key, 0, -1)]
        elif kind == b"stream":
            for i, fields in await redis.xrange(key):
                parts += [_b(i)] + [_b(f) + b"=" + _b(v) for f, v in fields.items()]
        else:
            parts.append(kind)
        if any(n in p for p in parts):
            found.append(f"redis:{_b(key).decode(errors='replace')}")
    return found


def _decoded(data: bytes) -> bytes:
    """A dead letter keeps the original payload base64-encoded: look inside it too."""
    try:
        inner = json.loads(data).get("payload_b64")
        return base64.b64decode(inner) if inner else b""
    except (ValueError, AttributeError, TypeError):
        return b""


async def scan_streams(js: JetStreamContext, needle: str) -> list[str]:
    n = needle.encode()
    found = []
    for info in await js.streams_info():
        name, state = info.config.name, info.state
        if state.messages == 0:
            continue
        for seq in range(state.first_seq, state.last_seq + 1):
            try:
                msg = await js.get_msg(name, seq)
            except NotFoundError:
                continue  # deleted or purged
            data = msg.data or b""
            headers = json.dumps(msg.headers or {}).encode()
            if needle in (msg.subject or "") or n in data or n in headers or n in _decoded(data):
                found.append(f"stream:{name}#{seq} {msg.subject}")
    return found


async def scan_objects(js: JetStreamContext, needle: str) -> list[str]:
    n = needle.encode()
    found = []
    for info in await js.streams_info():
        if not info.config.name.startswith("OBJ_"):
            continue
        bucket = info.config.name.removeprefix("OBJ_")
        store = await js.object_store(bucket)
        try:
            entries = await store.list()
        except NotFoundError:
            continue
        for entry in entries:
            content = b""
            if not entry.deleted:
                content = (await store.get(entry.name)).data or b""
            if needle in entry.name or n in content:
                found.append(f"object:{bucket}/{entry.name}")
    return found


async def scan(
    pool: asyncpg.Pool, redis: aioredis.Redis, js: JetStreamContext, needle: str
) -> list[str]:
    """Every place any store holds `needle` (empty: nothing of it anywhere)."""
    return [
        *await scan_postgres(pool, needle),
        *await scan_redis(redis, needle),
        *await scan_streams(js, needle),
        *await scan_objects(js, needle),
    ]
