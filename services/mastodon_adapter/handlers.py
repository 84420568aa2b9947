"""Handler of `follow.requested.mastodon`: act on still-planned targets, record, report."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg

from hqx import backoff, db, ledger, subjects
from hqx.consumer import Delivery
from hqx.crypto import TokenCipher
from hqx.errors import Reason
from hqx.messages import AccountPaused, FollowDone, FollowRequested
from hqx.messages.follow import FollowResult, FollowState, FollowTarget
from hqx.outcomes import Done, Outcome, RetryLater, Skipped
from hqx.subjects import Network
from services.mastodon_adapter import accounts, claims, events
from services.mastodon_adapter.client import AccountClients
from services.mastodon_adapter.follows import Follower, Stop

NET = Network.MASTODON


class Publisher:
    """What handlers need from the bus (the Service's `publish`, typed)."""

    async def publish(self, subject: str, message: object, *, msg_id: str | None = None) -> object:
        raise NotImplementedError


@dataclass
class Deps:
    bus: Publisher
    pool: asyncpg.Pool
    cipher: TokenCipher
    follower: Follower
    clients: AccountClients


async def handle_follow_requested(
    message: FollowRequested, delivery: Delivery, deps: Deps
) -> Outcome:
    """Idempotent: only `still_planned` targets are followed; a redelivery redoes nothing done."""
    uid = message.user_id
    if await db.is_erased(deps.pool, uid):
        return Skipped(Reason.USER_ERASED)
    account = await accounts.load(deps.pool, deps.cipher, uid)
    if account is None:
        return Skipped(Reason.NOT_LINKED)
    todo = await ledger.still_planned(deps.pool, uid, NET, message.targets)
    if not todo:
        return Done("nothing planned")
    if account.capped:
        return Skipped(Reason.FOLLOW_CAP)  # the targets stay planned: they are the CSV
    token = account.token.get_secret_value()
    client = deps.clients.take(account.instance, account.account, token)
    tag = db.user_hash(uid)

    async def guard(t: FollowTarget) -> Reason | None:
        return await ledger.may_follow(deps.pool, uid, tag, NET, t)

    try:
        holder = claims.holder_of(delivery.stream_sequence, delivery.num_delivered)
        stop = await deps.follower.run(
            account, client, todo, lambda rs: flush(deps, uid, rs), guard, holder
        )
    finally:
        deps.clients.give_back(account.account, token, client)
    return await conclude(deps, uid, stop, len(todo), delivery.stream_sequence)


async def flush(deps: Deps, uid: str, results: list[FollowResult]) -> None:
    """Report, then record: a kill in between re-follows (a no-op on Mastodon) and re-reports
    the same chunk, which JetStream drops by its content-derived id."""
    digest = hashlib.sha256(uid.encode())
    for r in results:
        digest.update(f"|{r.x_account_id}:{r.state}:{r.reason}".encode())
    done = FollowDone(user_id=uid, network=NET, results=tuple(results))
    await deps.bus.publish(
        subjects.follow_done(NET, uid), done, msg_id=f"mfd-{digest.hexdigest()[:40]}"
    )
    await ledger.record(deps.pool, uid, NET, results)
    made = sum(r.state in (FollowState.DONE, FollowState.REQUESTED) for r in results)
    events.follows_made(uid, made)
    for r in results:
        if r.state == FollowState.SKIPPED:
            events.follows_skipped(uid, r.reason or "unknown")


async def conclude(
    deps: Deps, uid: str, stop: Stop | None, planned: int, stream_sequence: int
) -> Outcome:
    if stop is None:
        return Done()
    if stop.reason == Reason.USER_ERASED:
        return Skipped(Reason.USER_ERASED)
    if stop.capped or stop.paused:
        if stop.capped:
            await accounts.mark_capped(deps.pool, uid, stop.budget or "422")
            events.follow_cap_reached(uid, planned)
        else:
            await accounts.pause(deps.pool, uid, stop.reason)
            events.account_paused(uid, stop.reason)
        paused = AccountPaused(user_id=uid, network=NET, reason=stop.reason)
        await deps.bus.publish(subjects.account_paused(NET, uid), paused)
        return Skipped(stop.reason)
    delay = stop.delay_s
    if stop.reason == Reason.NETWORK_UNAVAILABLE:
        s = deps.follower.settings
        delay = await backoff.unavailable_delay(
            deps.follower.redis,
            NET,
            stream_sequence,
            s.unavailable_first_retry_s,
            s.unavailable_retry_s,
        )
    events.batch_deferred(uid, stop.reason, delay, stop.budget)
    return RetryLater(delay, stop.reason)
