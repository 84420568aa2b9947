"""The repo's existing follows (subject DID -> record key), cached in Redis for one run.

Listing a big repo takes one request per 100 records, so a run lists it once and later batches
of the same account reuse it for a short TTL. The cache is a hint, never the only copy: a miss,
a redelivery or a doubtful write lists the repo again.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

_LISTED = "__listed__"  # an empty repo still needs a field for the hash to exist


def _key(did: str) -> str:
    return f"hqx:bluesky:follows:{did}"


async def get(redis: aioredis.Redis, did: str) -> dict[str, str] | None:
    raw = await redis.hgetall(_key(did))
    if not raw:
        return None
    out = {k.decode(): v.decode() for k, v in raw.items()}
    out.pop(_LISTED, None)
    return out


async def put(redis: aioredis.Redis, did: str, follows: Mapping[str, str], ttl_s: float) -> None:
    key = _key(did)
    async with redis.pipeline(transaction=True) as p:
        p.delete(key)
        p.hset(key, mapping={_LISTED: "1", **follows})
        p.pexpire(key, int(ttl_s * 1000))
        await p.execute()


async def add(redis: aioredis.Redis, did: str, follows: Mapping[str, str]) -> None:
    """Record follows we just made, if the listing is still cached (else the next run lists)."""
    if follows and await redis.exists(_key(did)):
        await redis.hset(_key(did), mapping=dict(follows))


async def drop(redis: aioredis.Redis, did: str) -> None:
    await redis.delete(_key(did))
