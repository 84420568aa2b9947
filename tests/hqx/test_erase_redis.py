"""`hqx.erasure.erase_redis` against a real Redis: exact over many SCAN pages, names and values."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from hqx.erasure import OPAQUE_VALUES, erase_redis


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


async def test_values_under_opaque_prefixes_are_not_read_but_their_names_are(
    redis_url: str,
) -> None:
    r = aioredis.Redis.from_url(redis_url)
    try:
        await r.set("hqx:budget:mastodon:me@inst.example:follows:total", "3")
        await r.set("hqx:mastodon:resolve:inst.example:me@inst.example", '{"id": "1"}')
        await r.set("hqx:budget:bluesky:did:plc:other:writes:total", "u9")  # a value: not read
        await r.set("hqx:session:s9", "u9")  # not opaque: its value is read

        changed = await erase_redis(r, "u9", accounts=["me@inst.example"])

        assert changed == 3
        assert await r.get("hqx:budget:bluesky:did:plc:other:writes:total") == b"u9"
        assert await r.dbsize() == 1
    finally:
        await r.aclose()


def test_every_writer_of_opaque_values_keeps_its_declared_prefix() -> None:
    """The list in `hqx.erasure` is a promise about other modules' keys: a renamed key would
    silently have its values read again (slow), or a new kind of key under a listed prefix
    would have its values skipped (data left behind). Each owner's key is checked here."""
    from hqx import backoff, ratelimit, service
    from services.bluesky_adapter import follow_index
    from services.gateway import ratelimit as requests
    from services.mastodon_adapter import resolver

    keys = {
        "hqx:budget:": ratelimit.PREFIX + ":",
        "hqx:mastodon:resolve:": resolver.KEY,
        "hqx:bluesky:follows:": follow_index.KEY,
        "hqx:failures:": service.FAILURES_KEY,
        "hqx:unavailable:": backoff.UNAVAILABLE_KEY,
        "hqx:reqlimit:": requests.KEY,
    }
    assert set(keys) == set(OPAQUE_VALUES)
    for prefix, key in keys.items():
        assert key.startswith(prefix), (prefix, key)
