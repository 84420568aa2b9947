"""`hqx.erasure.erase_redis` against a real Redis: exact over many SCAN pages, names and values."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from hqx.erasure import erase_redis


async def test_erases_exactly_the_person_across_pages(redis_url: str) -> None:
    me, longer = "u7", "u77"  # one id is a prefix of the other: a substring is not a match
    r = aioredis.Redis.from_url(redis_url)
    try:
        async with r.pipeline(transaction=False) as p:
            for i in range(5000):  # several SCAN pages of strangers
                p.set(f"hqx:progress:x{i}", f"someone {i}")
            await p.execute()
        await r.set(f"hqx:progress:{me}", "12")
        await r.set(f"hqx:progress:{longer}", "13")
        await r.set("hqx:session:s1", me)  # the value names me, the key does not
        await r.set("hqx:session:s2", longer)
        await r.sadd("hqx:active-users", me, longer)
        await r.hset("hqx:oauth-states", mapping={"a": json.dumps({"user_id": me}), "b": "x"})
        await r.rpush("hqx:recent", me, longer, "someone-else")
        await r.zadd("hqx:queue", {me: 1.0, longer: 2.0})
        # A key naming `longer` (a substring candidate for `me`) whose value names me.
        await r.set(f"hqx:note:{longer}", f"from {me}")
        await r.hset("hqx:bluesky:follows:did:plc:abcdefg", "did:plc:t", "rkey1")

        changed = await erase_redis(r, me, accounts=["did:plc:abcdefg"])

        assert changed == 8
        assert await r.dbsize() == 5000 + 6
        assert await r.get(f"hqx:progress:{me}") is None
        assert await r.get("hqx:session:s1") is None
        assert await r.get(f"hqx:note:{longer}") is None
        assert not await r.exists("hqx:bluesky:follows:did:plc:abcdefg")
        assert await r.get(f"hqx:progress:{longer}") == b"13"
        assert await r.get("hqx:session:s2") == longer.encode()
        assert await r.smembers("hqx:active-users") == {longer.encode()}
        assert await r.hgetall("hqx:oauth-states") == {b"b": b"x"}
        assert await r.lrange("hqx:recent", 0, -1) == [longer.encode(), b"someone-else"]
        assert await r.zrange("hqx:queue", 0, -1) == [longer.encode()]
        assert await erase_redis(r, me) == 0  # idempotent
    finally:
        await r.aclose()
