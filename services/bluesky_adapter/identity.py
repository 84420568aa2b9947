"""The linked Bluesky account of a user: its DID, PDS, status and encrypted session."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from pydantic import SecretStr

from hqx.crypto import TokenCipher
from hqx.subjects import Network

NETWORK = Network.BLUESKY.value


@dataclass(frozen=True)
class Identity:
    user_id: str
    did: str
    handle: str | None
    pds_url: str
    status: str
    token_cipher: bytes | None

    @property
    def active(self) -> bool:
        return self.status == "active" and self.token_cipher is not None

    def session(self, cipher: TokenCipher) -> SecretStr:
        assert self.token_cipher is not None
        return cipher.decrypt(self.token_cipher)


async def load(conn: asyncpg.Pool | asyncpg.Connection, user_id: str) -> Identity | None:
    row = await conn.fetchrow(
        "select account, handle, instance, status, token_cipher from identities"
        " where user_id = $1 and network = $2",
        user_id,
        NETWORK,
    )
    if row is None:
        return None
    return Identity(
        user_id,
        row["account"],
        row["handle"],
        row["instance"],
        row["status"],
        bytes(row["token_cipher"]) if row["token_cipher"] is not None else None,
    )


async def upsert(
    conn: asyncpg.Pool | asyncpg.Connection,
    cipher: TokenCipher,
    user_id: str,
    did: str,
    handle: str,
    pds_url: str,
    session: SecretStr,
    auth_kind: str = "app_password",
) -> None:
    """Link (or re-link) the account: active again, with its new encrypted session."""
    await conn.execute(
        """
        insert into identities (user_id, network, account, handle, instance, auth_kind,
                                token_cipher, status, status_reason)
        values ($1, $2, $3, $4, $5, $6, $7, 'active', null)
        on conflict (user_id, network) do update
           set account = excluded.account, handle = excluded.handle,
               instance = excluded.instance, auth_kind = excluded.auth_kind,
               token_cipher = excluded.token_cipher, status = 'active', status_reason = null,
               updated_at = now()
        """,
        user_id,
        NETWORK,
        did,
        handle,
        pds_url,
        auth_kind,
        cipher.encrypt(session.get_secret_value()),
    )


async def save_session(
    conn: asyncpg.Pool | asyncpg.Connection,
    cipher: TokenCipher,
    user_id: str,
    did: str,
    session: SecretStr,
) -> None:
    """Store a refreshed session (the old refresh JWT is spent) for this same account."""
    await conn.execute(
        "update identities set token_cipher = $4, updated_at = now()"
        " where user_id = $1 and network = $2 and account = $3",
        user_id,
        NETWORK,
        did,
        cipher.encrypt(session.get_secret_value()),
    )


async def pause(conn: asyncpg.Pool | asyncpg.Connection, user_id: str, reason: str) -> bool:
    """Pause the account's work; True only for the call that paused it (publish once)."""
    status = await conn.execute(
        "update identities set status = 'paused', status_reason = $3, updated_at = now()"
        " where user_id = $1 and network = $2 and status = 'active'",
        user_id,
        NETWORK,
        reason,
    )
    return status.endswith(" 1")
