"""Live progress over SSE, driven by real bus events and real PostgreSQL state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx

from hqx import subjects
from hqx.messages import ArchiveRejected, ConsentChanged, FollowDone, FollowResult, parse
from hqx.subjects import Network
from services.gateway.progress import wait_estimate
from tests.eventually import eventually
from tests.services.gateway.conftest import Gateway
from tests.services.gateway.test_uploads import CHUNK, small_zip


async def progress_events(c: httpx.AsyncClient) -> AsyncIterator[dict]:
    async with c.stream("GET", "/api/me/progress/stream") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "progress":
                yield json.loads(line[6:])


async def next_stage(events: AsyncIterator[dict], stage: str) -> dict:
    async def find() -> dict:
        async for doc in events:
            if doc["stage"] == stage:
                return doc
        raise AssertionError("stream ended")

    return await asyncio.wait_for(find(), 15)


async def test_stream_follows_upload_then_rejection(gateway: Gateway) -> None:
    data = small_zip(1)
    async with gateway.browser(signed_in=True) as c, gateway.browser() as watcher:
        user = (await c.get("/api/session")).json()["user_id"]
        watcher.cookies = c.cookies
        events = progress_events(watcher)
        assert (await next_stage(events, "none"))["upload"] is None
        up = (await c.post("/api/uploads", json={"size": len(data)})).json()
        await c.patch(
            f"/api/uploads/{up['id']}",
            content=data,
            headers={"Upload-Offset": "0", "Content-Type": CHUNK},
        )
        # Nothing on the bus wakes the stream for an upload: the keep-alive re-read would; the
        # ingest's answer does. Publish what ingest publishes for a refused archive.
        await gateway.svc.publish(
            subjects.archive_rejected(user),
            ArchiveRejected(
                user_id=user,
                object_name=f"{user}/{up['id']}",
                reason="owner_mismatch",
                message="not yours",
            ),
        )
        doc = await next_stage(events, "rejected")
        assert doc["upload"]["reason"] == "owner_mismatch"
        await events.aclose()
    await eventually(lambda: gateway.app.state.hub.listeners == 0)


async def test_stream_shows_follows_and_why_they_wait(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as c:
        user = (await c.get("/api/session")).json()["user_id"]
        pool = gateway.svc.pool
        await pool.execute(
            "insert into graphs (user_id, owner_x_id, following_count, follower_count, version)"
            " values ($1, 42, 3, 7, 1)",
            user,
        )
        await pool.executemany(
            "insert into follow_ledger (user_id, network, target_x_id, target, state, reason)"
            " values ($1, 'bluesky', $2, $3, $4, $5)",
            [
                (user, 1, "did:plc:a", "done", None),
                (user, 2, "did:plc:b", "planned", None),
                (user, 3, "did:plc:c", "skipped", "target_deleted"),
            ],
        )
        events = progress_events(c)
        doc = await next_stage(events, "following")
        bsky = doc["networks"]["bluesky"]
        assert (bsky["done"], bsky["pending"], bsky["skipped"]) == (1, 1, 1)
        assert bsky["skipped_reasons"] == {"target_deleted": 1}
        assert bsky["wait"] == {"reason": "rate_limit", "per_hour": 1600, "minutes_left": 1}
        await pool.execute(
            "update follow_ledger set state = 'done' where user_id = $1 and target_x_id = 2", user
        )
        await gateway.svc.publish(
            subjects.follow_done(Network.BLUESKY, user),
            FollowDone(
                user_id=user,
                network=Network.BLUESKY,
                results=(FollowResult(x_account_id="2", account="did:plc:b", state="done"),),
            ),
        )
        doc = await next_stage(events, "done")
        assert (
            doc["networks"]["bluesky"]["done"] == 2 and doc["networks"]["bluesky"]["wait"] is None
        )
        await events.aclose()


async def test_consent_is_saved_and_announced(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as c:
        user = (await c.get("/api/session")).json()["user_id"]
        r = await c.put("/api/me/consent", json={"auto_reconnect": {"bluesky": True}})
        assert r.json()["auto_reconnect"] == {"bluesky": True, "mastodon": False}
        r = await c.put(
            "/api/me/consent", json={"auto_reconnect": {"mastodon": True, "bluesky": False}}
        )
        assert r.json()["auto_reconnect"] == {"bluesky": False, "mastodon": True}
        row = await gateway.svc.pool.fetchval(
            "select auto_reconnect from users where id = $1", user
        )
        assert row == ["mastodon"]
    msg = await gateway.svc.js.get_last_msg("EVENTS", subjects.consent_changed(user))
    ev = parse(msg.data, (ConsentChanged,))
    assert isinstance(ev, ConsentChanged) and ev.auto_reconnect == {
        Network.MASTODON: True,
        Network.BLUESKY: False,
    }


async def test_stats_and_share_message(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as c:
        stats = (await c.get("/api/me/stats")).json()
        assert set(stats["networks"]) == {"bluesky", "mastodon"}
        share = (await c.get("/api/me/share", headers={"Accept-Language": "fr"})).json()
        assert share["message"].startswith("Je quitte X")


def test_wait_estimate_in_plain_numbers() -> None:
    assert wait_estimate(Network.BLUESKY, 0) is None
    assert wait_estimate(Network.BLUESKY, 1600)["minutes_left"] == 60
    assert wait_estimate(Network.MASTODON, 400)["minutes_left"] == 24 * 60


async def test_mastodon_csv_lists_the_follows_left_to_import(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as c:
        user = (await c.get("/api/session")).json()["user_id"]
        await gateway.svc.pool.executemany(
            "insert into follow_ledger (user_id, network, target_x_id, target, state, reason)"
            " values ($1, 'mastodon', $2, $3, $4, $5)",
            [
                (user, 1, "Ann@Example.Social", "planned", None),
                (user, 2, "bob@example.social", "done", None),
            ],
        )
        r = await c.get("/api/me/mastodon.csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        lines = r.text.splitlines()
        assert lines[0].startswith("Account address") and lines[1:] == [
            "ann@example.social,true,false,"
        ]
