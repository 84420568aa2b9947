"""What the gateway can tell a person about their data, read straight from PostgreSQL.

Used when the matcher's stats or the purger's export are not deployed (they own the full answer).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from hqx import audience
from hqx.subjects import Network


async def stats_fallback(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    seen = await audience.measure(pool, user_id)
    empty = {"followings_matched": 0, "followers_on_network": 0}
    return {"networks": {net.value: seen.get(net.value, empty) for net in Network}}


async def export_fallback(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    user = await pool.fetchrow(
        "select id, created_at, x_account_id, x_username, x_proven, auto_reconnect, locale"
        " from users where id = $1",
        user_id,
    )
    idents = await pool.fetch(
        "select network, account, handle, instance, auth_kind, status, linked_at"
        " from identities where user_id = $1",
        user_id,
    )
    edges = await pool.fetch(
        "select direction, x_account_id::text from graph_edges where user_id = $1", user_id
    )
    ledger = await pool.fetch(
        "select network, target_x_id::text, target, state, reason, updated_at"
        " from follow_ledger where user_id = $1",
        user_id,
    )
    return {
        "user": dict(user) if user else None,
        "identities": [dict(r) for r in idents],
        "followings": [r["x_account_id"] for r in edges if r["direction"] == 1],
        "followers": [r["x_account_id"] for r in edges if r["direction"] == 2],
        "follows": [dict(r) for r in ledger],
    }
