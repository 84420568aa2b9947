"""Server-side sessions in Redis: the cookie holds a random token, Redis holds its user.

Only a hash of the token is stored, so a Redis dump cannot be replayed as cookies. Each user's
session keys are indexed, so erasing a user signs out all their browsers.
"""

from __future__ import annotations

import hashlib
import secrets

import redis.asyncio as aioredis

COOKIE = "hqx_session"


def _key(token: str) -> str:
    return "hqx:session:" + hashlib.sha256(token.encode()).hexdigest()


def _index(user_id: str) -> str:
    return f"hqx:user-sessions:{user_id}"


async def open_session(redis: aioredis.Redis, user_id: str, ttl_s: int) -> str:
    """A new session for `user_id`; returns the cookie token."""
    token = secrets.token_urlsafe(32)
    key = _key(token)
    async with redis.pipeline(transaction=True) as p:
        p.set(key, user_id, ex=ttl_s)
        p.sadd(_index(user_id), key)
        p.expire(_index(user_id), ttl_s)
        await p.execute()
    return token


async def session_user(redis: aioredis.Redis, token: str | None) -> str | None:
    if not token or len(token) > 100:
        return None
    raw = await redis.get(_key(token))
    return _text(raw) if raw else None


async def close_session(redis: aioredis.Redis, token: str | None) -> None:
    if not token:
        return
    key = _key(token)
    user = await redis.get(key)
    await redis.delete(key)
    if user:
        await redis.srem(_index(_text(user)), key)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def close_all(redis: aioredis.Redis, user_id: str) -> int:
    """Sign the user out everywhere (after erase). Returns the number of sessions closed."""
    keys = await redis.smembers(_index(user_id))
    if keys:
        await redis.delete(*keys)
    await redis.delete(_index(user_id))
    return len(keys)
