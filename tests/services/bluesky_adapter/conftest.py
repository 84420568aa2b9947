"""Builders for the Bluesky adapter tests: users, linked accounts, planned batches, repo reads."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from hqx import ledger
from hqx.crypto import TokenCipher
from hqx.messages import FollowRequested, FollowTarget
from hqx.service import Service
from hqx.settings import ServiceSettings
from hqx.subjects import Network, follow_requested
from services.bluesky_adapter.app import create
from services.bluesky_adapter.follows import FOLLOW_COLLECTION
from services.bluesky_adapter.linking import link_app_password
from services.bluesky_adapter.settings import Settings
from tests.peers.bluesky import random_did

_next_x = iter(range(10**15, 10**16))


def adapter_settings(settings: ServiceSettings, **extra: Any) -> Settings:
    return Settings(**settings.model_dump(), **extra)


@pytest.fixture
async def adapter(settings: ServiceSettings) -> AsyncIterator[Service]:
    svc = create(adapter_settings(settings))
    await svc.start()
    yield svc
    await svc.stop()


async def new_user(pool: asyncpg.Pool) -> str:
    user = f"u{uuid.uuid4().hex[:16]}"
    await pool.execute("insert into users (id) values ($1)", user)
    return user


async def link(
    pool: asyncpg.Pool, settings: ServiceSettings, pds: dict[str, Any], account: dict[str, Any]
) -> tuple[str, str]:
    """A user with this PDS account linked (app password when it has one); (user_id, did)."""
    user = await new_user(pool)
    password = account.get("appPassword") or account["password"]
    did, _ = await link_app_password(
        pool, TokenCipher(settings.token_keys), user, account["handle"], password, pds["pdsUrl"]
    )
    return user, did


def targets(n: int) -> list[FollowTarget]:
    return [FollowTarget(x_account_id=str(next(_next_x)), account=random_did()) for _ in range(n)]


async def request_follows(
    pool: asyncpg.Pool,
    svc: Service,
    user: str,
    ts: list[FollowTarget],
    *,
    again: bool = False,
    plan: bool = True,
    size: int = 200,
    lane: Callable[[Network, str], str] = follow_requested,
) -> list[FollowRequested]:
    """Plan the targets in the ledger and publish them in batches of 200 (as the matcher does).

    `again`: publish with a fresh Nats-Msg-Id, i.e. a command redelivered past the dedup window.
    `lane`: the subject family (`follow_reconnect` for late joiners' follows).
    """
    if plan:
        await ledger.plan(pool, user, Network.BLUESKY, ts)
    out = []
    for i in range(0, len(ts), size):
        batch = tuple(ts[i : i + size])
        msg = FollowRequested(user_id=user, network=Network.BLUESKY, targets=batch)
        msg_id = msg.msg_id() + (f"-{uuid.uuid4().hex}" if again else "")
        await svc.publish(lane(Network.BLUESKY, user), msg, msg_id=msg_id)
        out.append(msg)
    return out


async def repo_follows(pds: dict[str, Any], did: str) -> list[tuple[str, str]]:
    """Every follow record of the repo as (subject, rkey), read straight from the PDS."""
    out: list[tuple[str, str]] = []
    cursor = None
    async with httpx.AsyncClient(base_url=pds["pdsUrl"], timeout=30) as c:
        while True:
            params = {"repo": did, "collection": FOLLOW_COLLECTION, "limit": 100}
            if cursor:
                params["cursor"] = cursor
            r = await c.get("/xrpc/com.atproto.repo.listRecords", params=params)
            r.raise_for_status()
            body = r.json()
            out += [(x["value"]["subject"], x["uri"].rsplit("/", 1)[-1]) for x in body["records"]]
            cursor = body.get("cursor")
            if not cursor or not body["records"]:
                return out


def follow_counts(records: list[tuple[str, str]], ts: list[FollowTarget]) -> Counter[int]:
    """How many records each target has, as a histogram: {1: 1000} means exactly once each."""
    per = Counter(s for s, _ in records)
    return Counter(per[t.account] for t in ts)


async def ledger_states(pool: asyncpg.Pool, user: str) -> dict[str, int]:
    return (await ledger.counts(pool, user)).get("bluesky", {})


def dumps(x: Any) -> str:
    return json.dumps(x, sort_keys=True)
