"""A person's audience on each network against real PostgreSQL, checked against a count made
in Python from the same rows, and the snapshot kept once the graph is gone."""

from __future__ import annotations

import random

import asyncpg

from hqx import audience
from tests.services.matcher.population import add_user, store_graph, x_base


async def test_audience_counts_each_edge_per_network_and_never_the_person(
    pool: asyncpg.Pool, user_id: str
) -> None:
    b, rng = x_base(), random.Random(11)
    await add_user(pool, user_id, b)
    # 300 people in the directory: on Bluesky, on Mastodon or both; the person's own entries
    # (and an X id of theirs that a friend's graph may list) are never their audience.
    entries: dict[int, list[str]] = {}
    for x in range(b + 1, b + 301):
        entries[x] = rng.choice([["bluesky"], ["mastodon"], ["bluesky", "mastodon"]])
        await add_user(pool, f"{user_id}-{x - b}", x)
    owners = {x: f"{user_id}-{x - b}" for x in entries}
    for x in rng.sample(sorted(entries), 5):
        owners[x] = user_id
    rows = [(x, n, f"{n}:{x}", owners[x]) for x, nets in entries.items() for n in nets]
    await pool.copy_records_to_table(
        "directory", records=rows, columns=["x_account_id", "network", "account", "user_id"]
    )
    # Followings and followers overlap (a mutual follow counts on both sides); a third of
    # each is nobody on the networks.
    everyone = range(b + 1, b + 451)
    followings, followers = rng.sample(everyone, 200), rng.sample(everyone, 250)
    await store_graph(pool, user_id, b, followings, followers)

    expected: dict[str, dict[str, int]] = {}
    for side, xs in (("followings_matched", followings), ("followers_on_network", followers)):
        for x in xs:
            if x in entries and owners[x] != user_id:
                for n in entries[x]:
                    counts = expected.setdefault(n, {"followings_matched": 0})
                    counts.setdefault("followers_on_network", 0)
                    counts[side] += 1
    assert await audience.measure(pool, user_id) == expected
    assert expected["bluesky"]["followings_matched"] > 0  # the draw covers every case
    assert expected["mastodon"]["followers_on_network"] > 0

    kept = await audience.keep(pool, user_id)  # the migration is done: the graph goes
    await pool.execute("delete from graph_edges where user_id = $1", user_id)
    assert await audience.measure(pool, user_id) == kept == expected


async def test_a_graph_with_nobody_on_the_networks_has_an_empty_audience(
    pool: asyncpg.Pool, user_id: str
) -> None:
    b = x_base()
    await add_user(pool, user_id, b)
    await store_graph(pool, user_id, b, [b + 1, b + 2], [b + 3])
    assert await audience.measure(pool, user_id) == {}
