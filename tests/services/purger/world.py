"""Builders: a person with data in every store, as the other services would leave it."""

from __future__ import annotations

import base64
import json
import random

import asyncpg
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from hqx import subjects
from hqx.crypto import TokenCipher
from hqx.messages import (
    DeadLetter,
    FollowRequested,
    FollowTarget,
    GraphIngested,
    IdentityLinked,
    MatchFound,
)
from hqx.settings import DEV_TOKEN_KEY
from hqx.subjects import ARCHIVE_BUCKET, Network
from tests.eventually import drained

CIPHER = TokenCipher(DEV_TOKEN_KEY)


def x_id() -> int:
    return random.randint(10**17, 9 * 10**18)


async def seed_postgres(
    pool: asyncpg.Pool, user_id: str, *, auto_reconnect: tuple[str, ...] = ()
) -> int:
    """A user with a graph, two linked accounts (tokens), a directory entry, a ledger."""
    me = x_id()
    await pool.execute(
        "insert into users (id, x_account_id, x_username, x_proven, auto_reconnect)"
        " values ($1, $2, $3, true, $4)",
        user_id,
        me,
        f"name_{user_id}",
        list(auto_reconnect),
    )
    await pool.execute(
        "insert into graphs (user_id, owner_x_id, following_count, follower_count, version)"
        " values ($1, $2, 3, 2, 1)",
        user_id,
        me,
    )
    edges = [(user_id, 1, x_id()) for _ in range(3)] + [(user_id, 2, x_id()) for _ in range(2)]
    await pool.executemany(
        "insert into graph_edges (user_id, direction, x_account_id) values ($1, $2, $3)", edges
    )
    for net, account in (("bluesky", f"did:plc:{user_id}"), ("mastodon", f"{user_id}@m.test")):
        await pool.execute(
            "insert into identities (user_id, network, account, handle, auth_kind, token_cipher)"
            " values ($1, $2, $3, $4, 'oauth', $5)",
            user_id,
            net,
            account,
            f"{user_id}.test",
            CIPHER.encrypt(json.dumps({"access": f"tok-{user_id}"})),
        )
        await pool.execute(
            "insert into directory (x_account_id, network, account, user_id)"
            " values ($1, $2, $3, $4)",
            me,
            net,
            account,
            user_id,
        )
    await pool.execute(
        "insert into directory_quarantine (x_account_id, network, user_id, reason)"
        " values ($1, 'bluesky', $2, 'owner_mismatch')",
        x_id(),
        user_id,
    )
    for state in ("done", "planned"):
        await pool.execute(
            "insert into follow_ledger (user_id, network, target_x_id, target, state)"
            " values ($1, 'bluesky', $2, $3, $4)",
            user_id,
            edges[0 if state == "done" else 1][2],
            f"did:plc:t{state}",
            state,
        )
    return me


async def seed_redis(redis: aioredis.Redis, user_id: str) -> None:
    await redis.set(f"hqx:progress:{user_id}", "12")
    await redis.set(f"hqx:session:{x_id()}", user_id)  # value names the user, key does not
    await redis.sadd("hqx:active-users", user_id)
    await redis.hset("hqx:oauth-states", f"st{x_id()}", json.dumps({"user_id": user_id}))
    await redis.rpush("hqx:recent", user_id, "someone-else")
    await redis.zadd("hqx:queue", {user_id: 1.0})
    # Keyed by the person's network account, not their id (an adapter's cache of their follows).
    await redis.hset(f"hqx:bluesky:follows:did:plc:{user_id}", "did:plc:target", "rkey1")


async def seed_streams(js: JetStreamContext, user_id: str) -> None:
    me = str(x_id())
    await js.publish(
        subjects.graph_ingested(user_id),
        GraphIngested(
            user_id=user_id,
            owner_x_account_id=me,
            following_count=3,
            follower_count=2,
            graph_version=1,
        ).to_bytes(),
    )
    await js.publish(
        subjects.identity_linked(user_id),
        IdentityLinked(
            user_id=user_id, network=Network.BLUESKY, account=f"did:plc:{user_id}"
        ).to_bytes(),
    )
    found = MatchFound(user_id=user_id, stats=())
    await js.publish(subjects.match_found(user_id), found.to_bytes())
    follow = FollowRequested(
        user_id=user_id,
        network=Network.BLUESKY,
        targets=(FollowTarget(x_account_id=str(x_id()), account="did:plc:target"),),
    )
    await js.publish(subjects.follow_requested(Network.BLUESKY, user_id), follow.to_bytes())
    for subject, payload in (
        (subjects.dlq("matcher", user_id), follow.to_bytes()),
        # A letter whose payload named no valid user token: its subject ends in "_".
        (subjects.dlq("matcher", "not a user"), json.dumps({"user_id": user_id}).encode()),
    ):
        letter = DeadLetter(
            service="matcher",
            reason="schema_invalid",
            original_subject=subject,
            payload_b64=base64.b64encode(payload).decode(),
        )
        await js.publish(subject, letter.model_dump_json(by_alias=True).encode())
    # A key-value bucket we did not define (e.g. another tool's): the value names the user.
    kv = await js.create_key_value(bucket="sessions", history=3)
    await kv.put(f"s{x_id()}", json.dumps({"user_id": user_id}).encode())


async def seed_objects(js: JetStreamContext, user_id: str) -> None:
    store = await js.object_store(ARCHIVE_BUCKET)
    await store.put(f"{user_id}/archive.zip", b"PK\x03\x04 raw archive of " + user_id.encode())
    await store.put(f"{user_id}/old.zip", b"PK old")
    await store.delete(f"{user_id}/old.zip")  # leaves a meta tombstone naming the object


async def seed_everything(
    pool: asyncpg.Pool, redis: aioredis.Redis, js: JetStreamContext, user_id: str
) -> None:
    await seed_postgres(pool, user_id)
    await seed_redis(redis, user_id)
    await seed_streams(js, user_id)
    await seed_objects(js, user_id)


async def purger_drained(js: JetStreamContext, timeout: float = 20.0) -> None:
    """Both purger durables (lifecycle, follow-done) have acked all they matched."""
    for spec in subjects.CONSUMERS_BY_SERVICE["purger"]:
        await drained(js, spec.stream.value, spec.durable, timeout=timeout)
