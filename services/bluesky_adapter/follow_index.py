"""The repo's existing follows (subject DID -> record key), cached in Redis for one run.

Listing a big repo takes one request per 100 records, so a run lists it once and later batches
of the same account reuse it for a short TTL. The cache is a hint, never the only copy: a miss,
a redelivery or a doubtful write lists the repo again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis

_LISTED = "__listed__"  # an empty repo still needs a field for the hash to exist
KEY = "hqx:bluesky:follows:{}"  # the repo's DID


def _key(did: str) -> str:
    return KEY.format(did)


async def lookup(redis: aioredis.Redis, did: str, subjects: Sequence[str]) -> dict[str, str] | None:
    """The cached record keys of these subjects (absent: not followed); None if not cached.

    Reads only the batch's subjects, not the whole listing (a repo may hold thousands).
    """
    values = await redis.hmget(_key(did), [_LISTED, *subjects])
    if values[0] is None:
        return None
    return {
        s: v.decode() if isinstance(v, bytes) else str(v)
        for s, v in zip(subjects, values[1:], strict=True)
        if v is not None
    }


async def put(redis: aioredis.Redis, did: str, follows: Mapping[str, str], ttl_s: float) -> None:
    key = _key(did)
    async with redis.pipeline(transaction=True) as p:
        p.delete(key)
        p.hset(key, mapping={_LISTED: "1", **follows})  # type: ignore[dict-item]
        p.pexpire(key, int(ttl_s * 1000))
        await p.execute()


async def add(redis: aioredis.Redis, did: str, follows: Mapping[str, str]) -> None:
    """Record follows we just made, if the listing is still cached (else the next run lists)."""
    if follows and await redis.exists(_key(did)):
        await redis.hset(_key(did), mapping=dict(follows))  # type: ignore[arg-type]


async def drop(redis: aioredis.Redis, did: str) -> None:
    await redis.delete(_key(did))
