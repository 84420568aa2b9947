"""`user@host` -> the account id on one instance, via `/api/v2/search?resolve=true`, cached.

Ids are per instance (each instance numbers the remote accounts it knows), so the cache is
keyed by instance host. A miss is cached for a shorter time: the account may appear later.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import redis.asyncio as aioredis

from services.mastodon_adapter.client import AccountClient, Resolved

KEY = "hqx:mastodon:resolve:{}:{}"
MISS = "-"


async def cached(redis: aioredis.Redis, host: str, acct: str) -> Resolved | str | None:
    """The cached answer: a `Resolved`, None (known missing), or MISS (not cached)."""
    raw = await redis.get(KEY.format(host, acct.lower()))
    if raw is None:
        return MISS
    if raw in (b"", b"null"):
        return None
    return Resolved(**json.loads(raw))


async def resolve(
    redis: aioredis.Redis,
    client: AccountClient,
    host: str,
    domain: str,
    acct: str,
    *,
    ttl_s: int,
    miss_ttl_s: int,
) -> Resolved | None:
    found = await client.resolve(acct, domain)
    key = KEY.format(host, acct.lower())
    if found is None:
        await redis.set(key, b"null", ex=miss_ttl_s)
    else:
        await redis.set(key, json.dumps(asdict(found)), ex=ttl_s)
    return found
