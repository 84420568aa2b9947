"""Hypothesis: a random population joins in a random order; the plans match a reference model.

Each example draws users (X follow graphs, one or two uploads, networks linked, initial consent,
some never proving their X id), then shuffles their events: proofs, uploads, links, unlinks and
consent changes. After replaying them through the matcher's database flows, the ledger must equal
a small reference model of the rules, and the stated guarantees must hold on their own:
every opted-in (follower, followee) pair where both are linked is planned exactly once, and no
reconnection is planned for anyone who did not consent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hqx.subjects import Network
from services.matcher import plans
from tests.services.matcher.population import (
    account,
    add_user,
    link,
    new_user_id,
    prove,
    store_graph,
    unlink,
    x_base,
)

NETS = (Network.BLUESKY, Network.MASTODON)
Row = tuple[int, str, int]  # (user index, network, target user index)


@dataclass
class Model:
    """The rules, written plainly over user indices."""

    n: int
    proven: set[int] = field(default_factory=set)
    graph: dict[int, set[int]] = field(default_factory=dict)
    linked: dict[int, set[str]] = field(default_factory=dict)
    optin: dict[int, set[str]] = field(default_factory=dict)
    directory: dict[tuple[int, str], int] = field(default_factory=dict)  # (x user, net) -> user
    ledger: dict[Row, str] = field(default_factory=dict)  # row -> origin

    def eligible(self, u: int) -> bool:
        return u in self.proven and u in self.graph

    def forward(self, u: int, nets: set[str], origin: str = "forward", prune: bool = False) -> None:
        if not self.eligible(u):
            return
        for net in nets:
            if prune:
                for row in [r for r in self.ledger if r[0] == u and r[1] == net]:
                    if row[2] not in self.graph[u]:
                        del self.ledger[row]
            for x in self.graph[u]:
                if (x, net) in self.directory and x != u:
                    row = (u, net, x)
                    # A forward plan takes over a row still planned as a late joiner's (no row
                    # is ever sent here): `hqx.ledger.plan_pairs`.
                    if origin == "forward" and self.ledger.get(row) == "reverse":
                        self.ledger[row] = "forward"
                    self.ledger.setdefault(row, origin)

    def join(self, v: int, net: str) -> None:
        if v not in self.proven or net not in self.linked.get(v, set()):
            return
        self.directory[(v, net)] = v
        for w in range(self.n):
            if (
                w != v
                and self.eligible(w)
                and v in self.graph[w]
                and net in self.linked.get(w, set())
                and net in self.optin.get(w, set())
            ):
                self.ledger.setdefault((w, net, v), "reverse")

    def leave(self, v: int, net: str) -> None:
        self.directory.pop((v, net), None)
        for row in [r for r in self.ledger if r[1] == net and (r[2] == v or r[0] == v)]:
            del self.ledger[row]


@st.composite
def populations(draw: st.DrawFn) -> tuple[int, list[tuple], dict[int, set[str]]]:
    n = draw(st.integers(2, 5))
    users = range(n)
    optin = {u: set(draw(st.sets(st.sampled_from([x.value for x in NETS])))) for u in users}
    events: list[tuple] = []
    for u in users:
        if draw(st.integers(0, 4)) > 0:  # most prove their X id
            events.append(("prove", u))
        for _ in range(draw(st.integers(0, 2))):
            followings = draw(st.sets(st.sampled_from(users), max_size=n))
            events.append(("upload", u, frozenset(followings)))
        for net in draw(st.sets(st.sampled_from([x.value for x in NETS]))):
            events.append(("link", u, net))
            if draw(st.integers(0, 5)) == 0:
                events.append(("unlink", u, net))
                events.append(("link", u, net))
        for _ in range(draw(st.integers(0, 2))):
            events.append(
                ("consent", u, draw(st.sampled_from([x.value for x in NETS])), draw(st.booleans()))
            )
    order = draw(st.permutations(range(len(events))))
    # a few consent changes once everyone has joined: catch-up and withdrawal at full effect
    late = draw(
        st.lists(
            st.tuples(
                st.just("consent"),
                st.sampled_from(users),
                st.sampled_from([x.value for x in NETS]),
                st.booleans(),
            ),
            max_size=3,
        )
    )
    return n, [events[i] for i in order] + late, optin


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(populations())
# A friend joins (a reverse row, unsent), then the person re-uploads: the forward plan takes it.
@example(
    population=(
        3,
        [
            ("prove", 0),
            ("upload", 0, frozenset({0, 1})),
            ("link", 0, "bluesky"),
            ("prove", 1),
            ("link", 1, "bluesky"),
            ("upload", 0, frozenset({0, 1})),
        ],
        {0: {"bluesky"}, 1: set(), 2: set()},
    )
)
async def test_random_population_matches_the_model(
    pool: asyncpg.Pool, population: tuple[int, list[tuple], dict[int, set[str]]]
) -> None:
    n, events, optin = population
    base = x_base()
    ids = [new_user_id() for _ in range(n)]
    index = {u: i for i, u in enumerate(ids)}
    model = Model(n, optin={u: set(s) for u, s in optin.items()})
    for i, u in enumerate(ids):
        await add_user(pool, u, base + i)
        await pool.execute(
            "update users set auto_reconnect = $2 where id = $1", u, sorted(optin[i])
        )
    clock = datetime.now(UTC)
    async with pool.acquire() as conn:
        for ev in events:
            kind, i = ev[0], ev[1]
            u = ids[i]
            clock += timedelta(milliseconds=1)
            if kind == "prove":
                await prove(pool, u, base + i)
                await plans.on_proven(conn, u, str(base + i), None)
                model.proven.add(i)
                for net in sorted(model.linked.get(i, set())):
                    model.join(i, net)
                model.forward(i, model.linked.get(i, set()))
            elif kind == "upload":
                followings = ev[2] | {n + 7}  # plus someone who never joins
                version = await store_graph(pool, u, base + i, [base + f for f in followings])
                await plans.on_graph(conn, u, version)
                model.graph[i] = set(ev[2])
                model.forward(i, model.linked.get(i, set()), prune=True)
            elif kind == "link":
                net = Network(ev[2])
                await link(pool, u, net, account(net, base + i, u))
                await plans.on_linked(conn, u, net, datetime.now(UTC))
                model.linked.setdefault(i, set()).add(net.value)
                model.join(i, net.value)
                model.forward(i, {net.value})
            elif kind == "unlink":
                net = Network(ev[2])
                await unlink(pool, u, net)
                await plans.on_unlinked(conn, u, net, clock)
                model.linked.get(i, set()).discard(net.value)
                model.leave(i, net.value)
            elif kind == "consent":
                net, wanted = Network(ev[2]), ev[3]
                # the gateway writes the choice itself, then announces it
                await pool.execute(
                    "update users set auto_reconnect = array(select distinct x from unnest("
                    "array_cat(auto_reconnect, $2::text[])) x where not x = any($3::text[]))"
                    " where id = $1",
                    u,
                    [net.value] if wanted else [],
                    [] if wanted else [net.value],
                )
                await plans.on_consent(conn, u, {net: wanted}, clock)
                if wanted:
                    model.optin[i].add(net.value)
                    if net.value in model.linked.get(i, set()):
                        model.forward(i, {net.value}, origin="reverse")
                else:
                    model.optin[i].discard(net.value)
                    for row in [
                        r
                        for r, o in model.ledger.items()
                        if r[0] == i and r[1] == net.value and o == "reverse"
                    ]:
                        del model.ledger[row]

    rows = await pool.fetch(
        "select user_id, network, target_x_id, target, origin, state from follow_ledger"
        " where user_id = any($1::text[])",
        ids,
    )
    got = {(index[r[0]], r[1], r[2] - base): r[4] for r in rows}
    assert len(got) == len(rows)  # exactly once per owner x network x target
    assert got == model.ledger, events
    for r in rows:
        t = r[2] - base
        assert r[3] == account(Network(r[1]), r[2], ids[t])  # the directory's account
        assert r[5] == "planned"

    # The guarantees, independently of the model:
    in_directory = {
        (index[r[0]], r[1])
        for r in await pool.fetch(
            "select user_id, network from directory where user_id = any($1::text[])", ids
        )
    }
    for u in range(n):
        if not model.eligible(u):
            assert not any(k[0] == u for k in got)  # an unproven graph drives nothing
            continue
        for net in model.linked.get(u, set()):
            for x in model.graph[u]:
                if x != u and (x, net) in in_directory and net in model.optin[u]:
                    assert (u, net, x) in got  # opted in, both linked: planned
        for (owner, net, _x), origin in got.items():
            if owner == u and origin == "reverse":
                assert net in model.optin[u]  # no reconnection without consent
