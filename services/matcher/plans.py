"""What each event changes in the directory and the follow plans (database only, no bus).

Each `on_<event>` is idempotent and returns the `Work` left for the handler: which owners have
new plans to dispatch on which network, and whose stats changed. Handlers publish; the
hypothesis tests call these directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from hqx import ledger
from hqx.errors import Reason
from hqx.subjects import Network
from services.matcher import consent, directory, due, events, match
from services.matcher.directory import Change


@dataclass
class Work:
    dispatch: dict[Network, set[str]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    skipped: Reason | None = None

    def send(self, network: Network, owners: list[str] | set[str]) -> None:
        if owners:
            self.dispatch.setdefault(network, set()).update(owners)


async def _join(conn: asyncpg.Connection, user_id: str, network: Network, work: Work) -> None:
    """Enter the directory (committed first), then reverse-match the entry."""
    change, entry = await directory.enter(conn, user_id, network)
    if change is Change.QUARANTINED:
        events.claim_quarantined(user_id, network.value, Reason.DIRECTORY_CONFLICT)
        return
    if entry is None:
        return
    if change is not Change.UNCHANGED:
        events.directory_changed(user_id, network.value, change.value)
    # NOTE: also on UNCHANGED: a redelivery after a crash between entering and planning.
    owners, own, created = await match.reverse(conn, entry)
    events.follows_planned(network.value, "forward", created["forward"], len(own))
    events.follows_planned(network.value, "reverse", created["reverse"], len(owners) - len(own))
    # NOTE: late joiners are not dispatched here but made due (`due.later`): the sweep sends
    # them after a short settle, so on an exodus day the friends who join within seconds of
    # each other reach each follower as one batch, not one message per friend. Part of a
    # follower's own migration goes now, as their forward match does, without waiting for
    # their batches in flight.
    work.send(network, own)
    await due.later(conn, network, set(owners) - set(own))
    work.dirty.update(owners)
    work.dirty.update(await match.followed_by(conn, entry.x_account_id))


async def _forward(
    conn: asyncpg.Connection,
    user_id: str,
    networks: list[Network],
    work: Work,
    *,
    origin: ledger.Origin = "forward",
    prune_stale: bool = False,
) -> None:
    work.dirty.add(user_id)
    reason = await match.ineligible(conn, user_id)
    if reason is not None:
        work.skipped = work.skipped or reason
        return
    planned = await match.forward(conn, user_id, networks, origin=origin, prune_stale=prune_stale)
    for network, created in planned.items():
        events.follows_planned(network.value, origin, created, 1)
        work.send(network, {user_id})


async def on_graph(conn: asyncpg.Connection, user_id: str, version: int | None = None) -> Work:
    """A new graph of the user: it replaces the old one's pending plans, then forward match."""
    work = Work()
    current = await conn.fetchval("select version from graphs where user_id = $1", user_id)
    if current is None:
        work.skipped = Reason.GRAPH_MISSING
        return work
    if version is not None and current > version:
        work.skipped = Reason.STALE_EVENT  # the newer graph's own event does the work
        return work
    networks = await directory.linked_networks(conn, user_id)
    await _forward(conn, user_id, networks, work, prune_stale=True)
    return work


async def on_linked(
    conn: asyncpg.Connection, user_id: str, network: Network, occurred_at: datetime
) -> Work:
    work = Work()
    await _join(conn, user_id, network, work)
    if await directory.linked_since(conn, user_id, network) is None:
        work.skipped = Reason.NOT_LINKED
        return work
    # A re-link (a paused account back): what was sent before it, and skipped, goes again.
    await ledger.resend_planned(conn, user_id, network, sent_before=occurred_at)
    await _forward(conn, user_id, [network], work)
    return work


async def on_proven(
    conn: asyncpg.Connection, user_id: str, x_account_id: str, x_username: str | None
) -> Work:
    work = Work()
    if not await directory.prove(conn, user_id, x_account_id, x_username):
        work.skipped = Reason.UNKNOWN_USER
        return work
    networks = await directory.linked_networks(conn, user_id)
    for network in networks:
        await _join(conn, user_id, network, work)
    await _forward(conn, user_id, networks, work)
    return work


async def on_unlinked(
    conn: asyncpg.Connection, user_id: str, network: Network, occurred_at: datetime
) -> Work:
    """Leave the directory on that network and drop the user's own pending follows there."""
    work = Work()
    since = await directory.linked_since(conn, user_id, network)
    if since is not None and since > occurred_at:
        work.skipped = Reason.STALE_EVENT  # relinked after this unlink
        return work
    for entry in await directory.leave(conn, user_id, network):
        events.directory_changed(user_id, entry.network.value, "left")
    await ledger.cancel_planned(conn, user_id, network)
    work.dirty.add(user_id)
    return work


async def on_consent(
    conn: asyncpg.Connection, user_id: str, changes: Mapping[Network, bool], at: datetime
) -> Work:
    """Opting in catches up on late joiners at once; withdrawing cancels reconnections pending."""
    work = Work()
    result = await consent.apply(conn, user_id, changes, at)
    if result is None:
        work.skipped = Reason.UNKNOWN_USER
        return work
    on, off = result
    for network in off:
        await ledger.cancel_planned(conn, user_id, network, origin="reverse")
    linked = set(await directory.linked_networks(conn, user_id))
    catch_up = [n for n in on if n in linked]
    if catch_up:
        await _forward(conn, user_id, catch_up, work, origin="reverse")
    work.dirty.add(user_id)
    return work


async def on_erase(conn: asyncpg.Connection, user_id: str) -> Work:
    """The user leaves the directory (everyone's pending follows of them go) and stops planning."""
    work = Work()
    for entry in await directory.leave(conn, user_id):
        events.directory_changed(user_id, entry.network.value, "left")
    await ledger.cancel_planned(conn, user_id)
    return work
