"""Right of access: everything HelloQuitteX holds on a person, as JSON (`hqx user export USER`,
`GET /me/export`). The companion of erase, found the same way: every table holding the user's
id, their Redis keys, their stream messages and their archives. Tokens are never exported: we
say one is held, encrypted."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from hqx import db, erasure
from hqx.settings import ServiceSettings
from hqx.subjects import Stream, check_user_id, user_filters
from services.purger import archives, audit

SECRET_MARK = "held, encrypted (never exported)"  # noqa: S105 - a label, not a secret
_SECRET_WORDS = ("cipher", "secret", "token", "password")


def plain(column: str, value: Any) -> Any:
    """A column value as JSON: secrets masked, big ids as strings (beyond float precision)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview) or any(
        w in column.lower() for w in _SECRET_WORDS
    ):
        return SECRET_MARK
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > 2**53 else value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [plain(column, v) for v in value]
    return value


def _row(record: asyncpg.Record) -> dict[str, Any]:
    return {k: plain(k, v) for k, v in record.items()}


async def _rows(pool: asyncpg.Pool, col: erasure.UserColumn, user_id: str) -> list[dict]:
    table = f"{erasure.ident(col.schema)}.{erasure.ident(col.table)}"
    sql = f"select * from {table} where {erasure.ident(col.column)}::text = $1"  # noqa: S608
    return [_row(r) for r in await pool.fetch(sql, user_id)]


async def export_postgres(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    user = await pool.fetchrow("select * from users where id = $1", user_id)
    out: dict[str, Any] = {"user": _row(user) if user else None}
    out["consents"] = {
        "auto_reconnect": list(user["auto_reconnect"]) if user else [],
        "auto_reconnect_at": user.get("auto_reconnect_at") if user else None,
    }
    tables: dict[str, list[dict]] = {}
    for col in await erasure.user_columns(pool):
        if col.table != "users":
            tables.setdefault(col.kind, []).extend(await _rows(pool, col, user_id))
    edges = tables.pop("graph_edges", [])
    graphs = tables.pop("graphs", [])
    out["graph"] = {
        "summary": graphs[0] if graphs else None,
        "following": [e["x_account_id"] for e in edges if e["direction"] == 1],
        "followers": [e["x_account_id"] for e in edges if e["direction"] == 2],
    }
    out["graph"]["counts"] = {k: len(out["graph"][k]) for k in ("following", "followers")}
    out["identities"] = tables.pop("identities", [])
    out["directory"] = tables.pop("directory", [])
    out["follow_ledger"] = tables.pop("follow_ledger", [])
    out["other_tables"] = {k: v for k, v in sorted(tables.items()) if v}
    tag = db.user_hash(user_id)
    out["audit"] = [
        _row(r)
        for r in await pool.fetch(
            "select trigger, kind, count, purged_at from purge_audit where user_hash = $1"
            " order by purged_at, id",
            tag,
        )
    ]
    out["erased"] = await db.is_erased(pool, user_id)
    return out


async def export_redis(
    redis: aioredis.Redis, user_id: str, accounts: list[str]
) -> list[dict[str, Any]]:
    """Keys naming the person or their network accounts, with their type and time to live
    (not their values: a session key's value is a credential)."""
    by_id = erasure.mentions(user_id)
    out = []
    async for key in redis.scan_iter(match="*", count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        if by_id(name) or any(a in name for a in accounts):
            kind = await redis.type(key)
            out.append(
                {
                    "key": name,
                    "type": kind.decode() if isinstance(kind, bytes) else str(kind),
                    "ttl_s": await redis.ttl(key),
                }
            )
    return sorted(out, key=lambda k: k["key"])


async def export_bus(js: JetStreamContext, user_id: str) -> dict[str, Any]:
    """Messages about the person still on the bus (counts per subject) and their archives."""
    messages: dict[str, int] = {}
    for stream in Stream:
        for flt in user_filters(user_id):
            messages.update(await erasure.subject_counts(js, stream.value, flt))
    objects = []
    hit = erasure.mentions(user_id)
    for obj in await erasure.list_objects(js, archives.STREAM):
        if hit(obj.name) and not obj.deleted:
            uploaded = obj.mtime.isoformat() if isinstance(obj.mtime, datetime) else None
            objects.append({"name": obj.name, "stored_at": uploaded})
    return {"messages": dict(sorted(messages.items())), "archives": objects}


async def export_user(
    pool: asyncpg.Pool, redis: aioredis.Redis, js: JetStreamContext, user_id: str
) -> dict[str, Any]:
    """Everything held on `user_id`, JSON-ready. Reads only; never a token or a secret."""
    check_user_id(user_id)
    accounts = await erasure.linked_accounts(pool, user_id)
    return {
        "schema": "hqx.user.export/v1",
        "user_id": user_id,
        "exported_at": datetime.now(UTC).isoformat(),
        **await export_postgres(pool, user_id),
        "redis_keys": await export_redis(redis, user_id, accounts),
        "bus": await export_bus(js, user_id),
        "audit_tag": audit.tag_of(user_id),
    }


async def _run(user_id: str, settings: ServiceSettings) -> dict[str, Any]:
    from hqx import bus

    pool = await db.connect(settings.database_url, max_size=2)
    redis = aioredis.from_url(settings.redis_url)
    nc = await bus.connect(settings, "export")
    try:
        return await export_user(pool, redis, nc.jetstream(), user_id)
    finally:
        await nc.close()
        await redis.aclose()
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    """`hqx user export USER`: print the person's export as JSON on stdout."""
    p = argparse.ArgumentParser(prog="hqx user export", description=main.__doc__)
    p.add_argument("user_id")
    args = p.parse_args(argv)
    try:
        check_user_id(args.user_id)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    data = asyncio.run(_run(args.user_id, ServiceSettings()))
    json.dump(data, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
    if data["user"] is None and not data["erased"]:
        print(f"no user {args.user_id!r}", file=sys.stderr)
        return 1
    return 0
