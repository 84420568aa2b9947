"""The linked Mastodon account of a user, as the follow path needs it (token decrypted)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg
from pydantic import SecretStr

from hqx.crypto import TokenCipher


@dataclass(frozen=True)
class Account:
    user_id: str
    account: str  # user@domain
    instance: str  # base URL
    token: SecretStr
    capped: bool

    @property
    def domain(self) -> str:
        return self.account.split("@", 1)[1]

    @property
    def host(self) -> str:
        return self.instance.split("://", 1)[-1]


async def load(pool: asyncpg.Pool, cipher: TokenCipher, user_id: str) -> Account | None:
    """The active Mastodon identity of a user, or None (not linked, paused, revoked)."""
    row = await pool.fetchrow(
        "select i.account, i.instance, i.token_cipher, m.follow_capped_at"
        "  from identities i left join mastodon_accounts m on m.user_id = i.user_id"
        " where i.user_id = $1 and i.network = 'mastodon' and i.status = 'active'",
        user_id,
    )
    if row is None or not row["token_cipher"]:
        return None
    token = json.loads(cipher.decrypt(row["token_cipher"]).get_secret_value())["access_token"]
    return Account(
        user_id,
        row["account"],
        row["instance"],
        SecretStr(token),
        row["follow_capped_at"] is not None,
    )


async def mark_capped(pool: asyncpg.Pool, user_id: str, detail: str) -> None:
    """422 from the instance: no more follows for this account (the rest goes to the CSV)."""
    await pool.execute(
        "insert into mastodon_accounts (user_id, follow_capped_at, cap_detail)"
        " values ($1, now(), $2) on conflict (user_id) do update set"
        " follow_capped_at = coalesce(mastodon_accounts.follow_capped_at, now()),"
        " cap_detail = excluded.cap_detail, updated_at = now()",
        user_id,
        detail[:500],
    )


async def pause(pool: asyncpg.Pool, user_id: str, reason: str) -> None:
    """401: the token no longer works; follows wait until the person links again."""
    await pool.execute(
        "update identities set status = 'paused', status_reason = $2, updated_at = now()"
        " where user_id = $1 and network = 'mastodon'",
        user_id,
        reason,
    )
