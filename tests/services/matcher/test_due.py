"""Which owners the dispatch sweep looks at (`services/matcher/due.py`), on real PostgreSQL."""

from __future__ import annotations

import asyncpg

from hqx.subjects import Network
from services.matcher import due
from tests.services.matcher.population import add_user, new_user_id, x_base

BSKY = Network.BLUESKY
SETTLE, IN_FLIGHT = 0.0, 600.0


async def _owner(pool: asyncpg.Pool, unsent: int, in_flight: int = 0) -> str:
    """An owner with `unsent` planned rows and `in_flight` rows of a batch sent just now."""
    user, b = new_user_id(), x_base()
    await add_user(pool, user, b)
    rows = [(user, "bluesky", b + k, f"did:plc:{k}", None) for k in range(1, unsent + 1)]
    rows += [(user, "bluesky", b + 100 + k, f"did:plc:f{k}", "batch") for k in range(in_flight)]
    await pool.executemany(
        "insert into follow_ledger (user_id, network, target_x_id, target, state, batch_id)"
        " values ($1, $2, $3, $4, 'planned', $5)",
        rows,
    )
    return user


async def _due_at(pool: asyncpg.Pool, user: str) -> object:
    return await pool.fetchval("select due_at from dispatch_due where user_id = $1", user)


async def _sweep(pool: asyncpg.Pool, user: str) -> tuple[bool, list[due.Seen]]:
    send, sent = await due.due(pool, SETTLE, 100_000, IN_FLIGHT)
    return user in send.get(BSKY, set()), [s for s in sent if s[0] == user]


async def test_an_owner_made_due_is_sent_then_forgotten(pool: asyncpg.Pool) -> None:
    alice = await _owner(pool, unsent=2)
    assert not (await _sweep(pool, alice))[0]  # nothing made alice due: the backstop's job
    await due.later(pool, BSKY, [alice])
    await due.later(pool, BSKY, [alice])  # idempotent
    send, sent = await _sweep(pool, alice)
    assert send and len(sent) == 1
    await due.forget(pool, sent)
    assert await _due_at(pool, alice) is None


async def test_a_late_joiner_planned_meanwhile_is_not_forgotten(pool: asyncpg.Pool) -> None:
    alice = await _owner(pool, unsent=1)
    await due.later(pool, BSKY, [alice])
    first = await _due_at(pool, alice)
    _, sent = await _sweep(pool, alice)
    await due.later(pool, BSKY, [alice])  # a friend joins while her batch is being sent
    await due.forget(pool, sent)
    assert await _due_at(pool, alice) == first  # still due, and since the first row
    assert (await _sweep(pool, alice))[0]


async def test_an_owner_with_nothing_unsent_is_forgotten(pool: asyncpg.Pool) -> None:
    alice = await _owner(pool, unsent=0, in_flight=3)
    await due.later(pool, BSKY, [alice])
    assert await _sweep(pool, alice) == (False, [])
    assert await _due_at(pool, alice) is None


async def test_an_owner_held_by_a_batch_waits_for_it_or_its_bound(pool: asyncpg.Pool) -> None:
    alice = await _owner(pool, unsent=2, in_flight=3)
    await due.later(pool, BSKY, [alice])
    assert await _sweep(pool, alice) == (False, [])
    sent_at = await pool.fetchval(
        "select max(updated_at) from follow_ledger where user_id = $1 and batch_id is not null",
        alice,
    )
    held_until = await _due_at(pool, alice)
    assert (held_until - sent_at).total_seconds() == IN_FLIGHT  # type: ignore[operator]
    assert await _sweep(pool, alice) == (False, [])  # postponed: not looked at again

    # The adapter acts on the batch (follow.done): alice is due again, and goes.
    await pool.execute(
        "update follow_ledger set state = 'done' where user_id = $1 and batch_id is not null",
        alice,
    )
    await due.wake(pool, alice, BSKY)
    assert (await _sweep(pool, alice))[0]


async def test_a_wake_during_the_sweep_is_not_lost(pool: asyncpg.Pool) -> None:
    """The sweep read alice as held, and her batch is acted on before it postpones her, or
    before it forgets her (sent, or nothing unsent as it read)."""
    alice = await _owner(pool, unsent=1, in_flight=1)
    await due.later(pool, BSKY, [alice])
    rows = await pool.fetch(due.DUE, SETTLE, 100_000, IN_FLIGHT)
    read = next(r for r in rows if r["user_id"] == alice)
    assert read["in_flight_at"] is not None
    seen = (alice, "bluesky", read["touched_at"])
    await pool.execute(
        "update follow_ledger set state = 'done' where user_id = $1 and batch_id is not null",
        alice,
    )
    await due.wake(pool, alice, BSKY)
    await due.postpone(pool, [(seen, read["in_flight_at"])])
    await due.forget(pool, [seen])
    assert (await _sweep(pool, alice))[0]
