"""Automatic-reconnection consent per network (users.auto_reconnect), newest choice wins."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

import asyncpg

from hqx.subjects import Network


async def apply(
    conn: asyncpg.Connection, user_id: str, changes: Mapping[Network, bool], at: datetime
) -> tuple[list[Network], list[Network]] | None:
    """Apply a consent change; returns the networks (opted in, opted out) it decides, None for
    an unknown user.

    The gateway may already have written users.auto_reconnect: the message, not a diff with the
    row, says what to do (both follow-ups are idempotent). A network's choice is applied only if
    `at` is newer than the last one applied to it, so a late redelivery of an old change never
    undoes a newer one.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "select auto_reconnect, auto_reconnect_at from users where id = $1 for update",
            user_id,
        )
        if row is None:
            return None
        current = set(row["auto_reconnect"])
        stamps: dict[str, str] = json.loads(row["auto_reconnect_at"] or "{}")
        on, off = [], []
        for network, wanted in sorted(changes.items()):
            last = stamps.get(network.value)
            if last is not None and datetime.fromisoformat(last) >= at:
                continue
            stamps[network.value] = at.isoformat()
            if wanted:
                current.add(network.value)
                on.append(network)
            else:
                current.discard(network.value)
                off.append(network)
        await conn.execute(
            "update users set auto_reconnect = $2, auto_reconnect_at = $3::jsonb where id = $1",
            user_id,
            sorted(current),
            json.dumps(stamps),
        )
    return on, off
