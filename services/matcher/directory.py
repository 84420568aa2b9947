"""The directory: X account id -> the identity its proven owner linked on each network.

Only a user whose X id is proven (X sign-in) enters it; the first proven owner of an X id keeps
the entry, and a later conflicting claim is quarantined (audit row), never written over it.
Every function is idempotent: a redelivered event finds the work done and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias

import asyncpg

from hqx.errors import Reason
from hqx.subjects import Network

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


class Change(StrEnum):
    ENTERED = "entered"
    UPDATED = "updated"  # same owner, new account or handle (relinked)
    UNCHANGED = "unchanged"
    QUARANTINED = "quarantined"
    NOT_PROVEN = "not_proven"
    NOT_LINKED = "not_linked"


@dataclass(frozen=True)
class Entry:
    """One directory entry: whoever followed `x_account_id` on X may follow `account`."""

    x_account_id: int
    network: Network
    account: str
    user_id: str


async def prove(conn: Conn, user_id: str, x_account_id: str, x_username: str | None) -> bool:
    """Mark the user's X id as proven (X sign-in); False when the user is unknown."""
    status = await conn.execute(
        """
        update users set x_proven = true, x_account_id = $2,
               x_username = coalesce($3, x_username), x_proven_at = coalesce(x_proven_at, now())
         where id = $1
        """,
        user_id,
        int(x_account_id),
        x_username,
    )
    return status != "UPDATE 0"


async def enter(
    conn: asyncpg.Connection, user_id: str, network: Network
) -> tuple[Change, Entry | None]:
    """Put the user's identity on `network` in the directory, if their X id is proven.

    Returns the change and the entry as it stands (None when nothing may enter).
    """
    user = await conn.fetchrow("select x_account_id, x_proven from users where id = $1", user_id)
    if user is None or not user["x_proven"] or user["x_account_id"] is None:
        return Change.NOT_PROVEN, None
    x = int(user["x_account_id"])
    ident = await conn.fetchrow(
        "select account, handle from identities"
        " where user_id = $1 and network = $2 and status <> 'revoked'",
        user_id,
        network.value,
    )
    if ident is None:
        return Change.NOT_LINKED, None
    async with conn.transaction():
        # A user re-proven under another X id leaves the entries of the old one.
        await conn.execute(
            "delete from directory where user_id = $1 and network = $2 and x_account_id <> $3",
            user_id,
            network.value,
            x,
        )
        row = await conn.fetchrow(
            """
            insert into directory (x_account_id, network, account, handle, user_id)
            values ($1, $2, $3, $4, $5)
            on conflict (x_account_id, network) do update
               set account = excluded.account, handle = excluded.handle
             where directory.user_id = excluded.user_id
               and (directory.account, directory.handle)
                   is distinct from (excluded.account, excluded.handle)
            returning (xmax = 0) as inserted
            """,
            x,
            network.value,
            ident["account"],
            ident["handle"],
            user_id,
        )
        current = await conn.fetchrow(
            "select account, user_id from directory where x_account_id = $1 and network = $2",
            x,
            network.value,
        )
    entry = Entry(x, network, current["account"], current["user_id"])
    if row is not None:
        return (Change.ENTERED if row["inserted"] else Change.UPDATED), entry
    if current["user_id"] == user_id:
        return Change.UNCHANGED, entry
    await quarantine(conn, x, network, user_id, Reason.DIRECTORY_CONFLICT)
    return Change.QUARANTINED, None


async def quarantine(conn: Conn, x: int, network: Network, user_id: str, reason: str) -> bool:
    """Record a conflicting claim once (a redelivery adds no second row); True if new."""
    status = await conn.execute(
        """
        insert into directory_quarantine (x_account_id, network, user_id, reason)
        select $1, $2, $3, $4
         where not exists (select 1 from directory_quarantine
                            where x_account_id = $1 and network = $2 and user_id = $3)
        """,
        x,
        network.value,
        user_id,
        reason,
    )
    return status == "INSERT 0 1"


async def leave(conn: Conn, user_id: str, network: Network | None = None) -> list[Entry]:
    """Remove the user's entries (one network or all); returns what was removed.

    The `directory_entry_gone` trigger cancels everyone's pending follows of those entries.
    """
    rows = await conn.fetch(
        "delete from directory where user_id = $1 and ($2::text is null or network = $2)"
        " returning x_account_id, network, account",
        user_id,
        network.value if network else None,
    )
    return [Entry(r["x_account_id"], Network(r["network"]), r["account"], user_id) for r in rows]


async def linked_networks(conn: Conn, user_id: str) -> list[Network]:
    rows = await conn.fetch(
        "select network from identities where user_id = $1 and status <> 'revoked'"
        " order by network",
        user_id,
    )
    return [Network(r["network"]) for r in rows]


async def linked_since(conn: Conn, user_id: str, network: Network) -> datetime | None:
    """When the user's current link on `network` was made (None: not linked)."""
    return await conn.fetchval(
        "select linked_at from identities where user_id = $1 and network = $2",
        user_id,
        network.value,
    )
