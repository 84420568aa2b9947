"""HQX accounts: `users` rows, created anonymously or by X sign-in."""

from __future__ import annotations

import secrets

import asyncpg


def new_user_id() -> str:
    """A random url-safe id (it becomes a subject token: `^[A-Za-z0-9_-]{1,64}$`)."""
    return "u" + secrets.token_urlsafe(16)


async def create_user(pool: asyncpg.Pool, locale: str | None = None) -> str:
    user_id = new_user_id()
    await pool.execute("insert into users (id, locale) values ($1, $2)", user_id, locale)
    return user_id


async def user_for_x(pool: asyncpg.Pool, x_account_id: int) -> str | None:
    """The account that already proved this X id (signing in again returns to it)."""
    return await pool.fetchval(
        "select id from users where x_account_id = $1 and x_proven order by x_proven_at limit 1",
        x_account_id,
    )


async def mark_proven(
    pool: asyncpg.Pool, user_id: str, x_account_id: int, x_username: str | None
) -> bool:
    """Record the proof; returns False when the user no longer exists (erased meanwhile)."""
    status = await pool.execute(
        "update users set x_account_id = $2, x_username = $3, x_proven = true,"
        " x_proven_at = coalesce(x_proven_at, now()) where id = $1",
        user_id,
        x_account_id,
        x_username,
    )
    return status.endswith(" 1")


async def get_user(pool: asyncpg.Pool, user_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "select id, created_at, x_account_id, x_username, x_proven, auto_reconnect, locale"
        " from users where id = $1",
        user_id,
    )
