"""Erase end to end on real NATS, Redis and PostgreSQL: a scan of every store finds nothing of
the person afterwards, other people's data is intact, and nothing comes back."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from hqx import db, erasure, subjects
from hqx.messages import DataPurged, GraphIngested, IdentityLinked, UserEraseRequested
from hqx.service import Service
from hqx.subjects import Network, Stream
from tests.eventually import eventually
from tests.scan import scan
from tests.services.purger import world


def new_user() -> str:
    return f"u{uuid.uuid4().hex[:16]}"


async def extra_tables(pool: asyncpg.Pool) -> None:
    """Tables no list in the purger knows: found from the catalog, not by name."""
    await pool.execute("create table if not exists notes_unlinked (user_id text, note text)")
    await pool.execute(
        "create table if not exists owned_things (owner text references users (id), n int)"
    )


async def seed_extra(pool: asyncpg.Pool, user_id: str) -> None:
    await pool.execute("insert into notes_unlinked values ($1, 'hello')", user_id)
    await pool.execute("insert into owned_things values ($1, 1)", user_id)


async def erase(svc: Service, user_id: str) -> None:
    await svc.publish(subjects.user_erase(user_id), UserEraseRequested(user_id=user_id))


def kinds_of(found: list[str]) -> set[str]:
    return {f.split(":", 1)[0] for f in found}


async def test_erase_leaves_nothing_and_keeps_others(purger: Service) -> None:
    me, other = new_user(), new_user()
    await extra_tables(purger.pool)
    for u in (me, other):
        await world.seed_everything(purger.pool, purger.redis, purger.js, u)
        await seed_extra(purger.pool, u)
    before = await scan(purger.pool, purger.redis, purger.js, me)
    assert kinds_of(before) == {"pg", "redis", "stream", "object"}
    other_before = await scan(purger.pool, purger.redis, purger.js, other)

    await erase(purger, me)

    async def nothing_left() -> bool:
        return await scan(purger.pool, purger.redis, purger.js, me) == []

    await eventually(nothing_left, timeout=30, interval=0.3)
    await world.purger_drained(purger.js)
    assert await scan(purger.pool, purger.redis, purger.js, me) == []
    assert await scan(purger.pool, purger.redis, purger.js, f"did:plc:{me}") == []
    assert await db.is_erased(purger.pool, me)
    # Other people's data is all still there, in every store (their erase-free scan is equal).
    assert await scan(purger.pool, purger.redis, purger.js, other) == other_before
    assert await purger.redis.sismember("hqx:active-users", other)
    recent = await purger.redis.lrange("hqx:recent", 0, -1)
    assert other.encode() in recent and me.encode() not in recent


async def test_erase_is_audited_without_the_user_id(purger: Service) -> None:
    me = new_user()
    await world.seed_everything(purger.pool, purger.redis, purger.js, me)
    await erase(purger, me)
    tag = db.user_hash(me)
    msg = await eventually(lambda: _last(purger, subjects.data_purged(tag)), timeout=30)
    event = DataPurged.model_validate_json(msg.data)
    assert event.trigger == "user_erase"
    assert event.kinds["graph_edges"] == 5
    assert event.kinds["identities"] == 2
    assert event.kinds["users"] == 1
    assert event.kinds["objects"] == 2  # the archive and a deleted object's meta
    assert event.kinds["redis_keys"] >= 5
    assert me.encode() not in msg.data
    rows = await purger.pool.fetch("select * from purge_audit where user_hash = $1", tag)
    assert {r["kind"] for r in rows} >= {"graph_edges", "identities", "users", "stream_messages"}
    assert all(me not in str(dict(r)) for r in rows)


async def _last(svc: Service, subject: str):
    try:
        return await svc.js.get_last_msg(Stream.EVENTS.value, subject)
    except Exception:
        return None


async def test_erase_twice_concurrently_is_harmless(purger: Service) -> None:
    me = new_user()
    await world.seed_everything(purger.pool, purger.redis, purger.js, me)
    await erase(purger, me)
    await erase(purger, me)
    await world.purger_drained(purger.js, timeout=30)
    assert await scan(purger.pool, purger.redis, purger.js, me) == []
    tag = db.user_hash(me)
    edges = await purger.pool.fetchval(
        "select sum(count) from purge_audit where user_hash = $1 and kind = 'graph_edges'", tag
    )
    assert edges == 5  # counted once: the second erase found nothing left


@pytest.mark.parametrize("settle", [3.0])
async def test_nothing_comes_back_after_erase(purger: Service, settle: float) -> None:
    """Late writers (a handler that checked is_erased just before the tombstone) cannot bring
    the person back: the users row is refused, rows need it, late bus messages are purged by
    the settle pass, and a late follow.done makes the purger purge again."""
    purger.settings.erase_settle_s = settle  # type: ignore[attr-defined]
    me = new_user()
    me_x = await world.seed_postgres(purger.pool, me)
    await world.seed_streams(purger.js, me)
    await erase(purger, me)
    tag = db.user_hash(me)
    await eventually(
        lambda: purger.pool.fetchval("select count(*) from purge_audit where user_hash = $1", tag)
    )
    # First pass done; the settle pass has not run yet. In-flight work lands now:
    with pytest.raises(asyncpg.RaiseError, match="user was erased"):
        await purger.pool.execute("insert into users (id) values ($1)", me)
    with pytest.raises(asyncpg.ForeignKeyViolationError):  # (graph_edges: see hqx.db.lock_graph)
        await purger.pool.execute(
            "insert into follow_ledger (user_id, network, target_x_id, target, state)"
            " values ($1, 'bluesky', 5, 'did:plc:late', 'planned')",
            me,
        )
    await purger.publish(
        subjects.graph_ingested(me),
        GraphIngested(
            user_id=me,
            owner_x_account_id=str(me_x),
            following_count=1,
            follower_count=0,
            graph_version=2,
        ),
    )
    await purger.publish(
        subjects.identity_linked(me),
        IdentityLinked(user_id=me, network=Network.MASTODON, account=f"{me}@m.test"),
    )
    late = await scan(purger.pool, purger.redis, purger.js, me)
    assert {f.split()[-1] for f in late} >= {subjects.graph_ingested(me), subjects.user_erase(me)}

    async def nothing_left() -> bool:
        return await scan(purger.pool, purger.redis, purger.js, me) == []

    await eventually(nothing_left, timeout=30, interval=0.3)
    await world.purger_drained(purger.js)
    assert await scan(purger.pool, purger.redis, purger.js, me) == []


async def test_two_replicas_share_the_work_and_count_once(
    purger: Service, purger_settings, clock
) -> None:
    from services.purger.app import create

    second = create(purger_settings, clock=clock)
    await second.start()
    try:
        users = [new_user() for _ in range(4)]
        for u in users:
            await world.seed_everything(purger.pool, purger.redis, purger.js, u)
        for u in users:  # each erase requested twice, the two replicas race for them
            await erase(purger, u)
            await erase(second, u)

        left: dict[str, list[str]] = {}

        async def all_gone() -> bool:
            for u in users:
                left[u] = await scan(purger.pool, purger.redis, purger.js, u)
            return not any(left.values())

        try:
            await eventually(all_gone, timeout=60, interval=0.5)
        except AssertionError as e:
            raise AssertionError(f"still held after the erase: {left}") from e
        await world.purger_drained(purger.js, timeout=30)
        for u in users:
            edges = await purger.pool.fetchval(
                "select sum(count) from purge_audit where user_hash = $1 and kind = 'graph_edges'",
                db.user_hash(u),
            )
            assert edges == 5
    finally:
        await second.stop()


async def test_an_erase_waits_for_an_ingest_in_flight_and_deletes_what_it_wrote(
    purger: Service,
) -> None:
    """graph_edges has no foreign key (COPY speed): the graph lock orders ingest and erasure."""
    me = new_user()
    async with purger.pool.acquire() as ingest:
        tx = ingest.transaction()
        await tx.start()
        await db.lock_graph(ingest, me)  # what services.ingest.graphs.store does first
        await ingest.execute("insert into users (id) values ($1)", me)
        await ingest.copy_records_to_table(
            "graph_edges", records=[(me, 2, x) for x in range(1, 1001)],
            columns=["user_id", "direction", "x_account_id"],
        )  # fmt: skip
        eraser = asyncio.create_task(erasure.delete_rows(purger.pool, me))
        await eventually(lambda: waiting_for_an_advisory_lock(purger.pool))
        assert not eraser.done()  # waiting for the ingest to commit
        await tx.commit()
        counts = await asyncio.wait_for(eraser, 10)
    assert counts.get("graph_edges") == 1000
    left = await purger.pool.fetchval("select count(*) from graph_edges where user_id = $1", me)
    assert left == 0


async def waiting_for_an_advisory_lock(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval(
            "select count(*) from pg_locks where locktype = 'advisory' and not granted"
        )
    )
