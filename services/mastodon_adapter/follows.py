"""Follow the still-planned targets of one batch for one account, inside its budgets.

Stops at the first thing that says "not now" (an empty budget, a 429, the instance down, the
handler's time limit) and reports what it did so far; the caller records that and re-delivers
the rest later. Never sleeps. A few follows of one batch are in flight at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from hqx.errors import Reason
from hqx.messages.follow import FollowResult, FollowState, FollowTarget
from hqx.ratelimit import Budget, Charge, Grant, RateLimiter
from services.mastodon_adapter import claims, events, resolver
from services.mastodon_adapter.accounts import Account
from services.mastodon_adapter.budgets import Budgets, observe_headers
from services.mastodon_adapter.client import (
    AccountClient,
    FollowCapError,
    RateLimitedError,
    Relationship,
    Resolved,
    TargetError,
    UnauthorizedError,
    UnavailableError,
)
from services.mastodon_adapter.settings import Settings

CHUNK = 20
Flush = Callable[[list[FollowResult]], Awaitable[None]]
# Right before each follow call: why it must not be made now (`hqx.ledger.may_follow`).
Guard = Callable[[FollowTarget], Awaitable[Reason | None]]


@dataclass
class Stop:
    """Why the batch stopped early: `delay_s` for a retry, or a terminal account state."""

    reason: str
    delay_s: float = 0.0
    budget: str | None = None
    capped: bool = False
    paused: bool = False


@dataclass
class Follower:
    settings: Settings
    redis: aioredis.Redis
    limiter: RateLimiter
    budgets: Budgets
    results: list[FollowResult] = field(default_factory=list)

    async def run(
        self,
        account: Account,
        client: AccountClient,
        todo: Sequence[FollowTarget],
        flush: Flush,
        guard: Guard,
        holder: str,
    ) -> Stop | None:
        """Follow `todo`, up to `follows_in_flight` at once; `flush` gets results every CHUNK.

        Each follow is about seven round trips (cache, budget, search, ledger guard, budget,
        follow, headers), mostly waiting: one at a time, an account's speed under load is what
        its round trips add up to. The first follow goes alone, so that a batch meeting an
        empty budget, a 429, a 401 or the cap learns it from one call, not from several; the
        rest go `follows_in_flight` at a time (each has its own ledger row and its own atomic
        budget grant). Once something says "not now", nothing new starts: what is in flight
        finishes and is reported. `guard` is asked right before each follow, so an erase or a
        cancellation meanwhile stops the batch within the follows already past their check.
        Each follow is claimed for `holder` first (`claims`); a target another delivery holds
        is left, the rest go on, and the batch comes back for it (`follow_in_flight`). A claim
        this message held before (a killed delivery, an outage) asks the relationship first.
        """
        started = time.monotonic()
        pending: list[FollowResult] = []
        stop: Stop | None = None
        held_elsewhere: Stop | None = None
        width = 1
        left = iter(todo)
        running: set[asyncio.Task[FollowResult | Stop | None]] = set()
        try:
            while True:
                while stop is None and len(running) < width:
                    if time.monotonic() - started > self.settings.batch_time_limit_s:
                        stop = Stop("batch_time_limit", 0.01)
                        break
                    target = next(left, None)
                    if target is None:
                        break
                    one = self._one(account, client, target, guard, holder)
                    running.add(asyncio.create_task(one))
                if not running:
                    break
                finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    res = task.result()
                    if isinstance(res, Stop) and res.reason == Reason.FOLLOW_IN_FLIGHT:
                        held_elsewhere = res
                    elif isinstance(res, Stop):
                        stop = graver(stop, res)
                    elif res is not None:  # None: no longer planned, nothing made or reported
                        pending.append(res)
                        width = self.settings.follows_in_flight
                if len(pending) >= CHUNK:
                    await self._flush(account, flush, pending)
                    pending = []
        finally:
            if running:  # an error: let the calls in flight end (a follow is not cancellable)
                await asyncio.gather(*running, return_exceptions=True)
        if pending and not (stop and stop.reason == Reason.USER_ERASED):
            await self._flush(account, flush, pending)
        elif pending:  # an erased person's results: nothing left to record them in
            await claims.release(self.redis, account.account, [r.x_account_id for r in pending])
        return stop or held_elsewhere

    async def _flush(self, account: Account, flush: Flush, results: list[FollowResult]) -> None:
        await flush(results)
        await claims.release(self.redis, account.account, [r.x_account_id for r in results])

    async def _one(
        self, account: Account, client: AccountClient, t: FollowTarget, guard: Guard, holder: str
    ) -> FollowResult | Stop | None:
        try:
            found = await self._resolve(account, client, t.account)
            if isinstance(found, Stop):
                return found
            if found is None:
                return _skipped(t, Reason.TARGET_NOT_FOUND)
            if found.suspended:
                return _skipped(t, Reason.TARGET_SUSPENDED)
            ttl, quiet = self.settings.follow_claim_ttl_s, self.settings.claim_quiet_s
            claim = await claims.take(
                self.redis, account.account, t.x_account_id, holder, ttl, quiet
            )
            if claim is claims.Claim.HELD:
                return Stop(Reason.FOLLOW_IN_FLIGHT, self.settings.claim_retry_s)
            res: FollowResult | Stop | None = None
            try:
                # NOTE: the guard after the claim: a twin that recorded and released in between
                # is seen as done here, never followed again.
                why = await guard(t)
                if why == Reason.USER_ERASED:
                    return Stop(Reason.USER_ERASED)
                if why is not None:
                    return None
                if claim is claims.Claim.RETAKEN:
                    res = await self._made_before(account, client, t, found)
                    if res is not None:
                        return res
                res = await self._follow(account, client, t, found)
                return res
            finally:
                if not isinstance(res, FollowResult):  # no follow made: nothing to record
                    await claims.release(self.redis, account.account, [t.x_account_id])
        except UnauthorizedError:
            return Stop(Reason.SESSION_REVOKED, paused=True)
        except UnavailableError:
            return unavailable(self.settings)
        except RateLimitedError as e:
            await observe_headers(self.limiter, self.budgets, account.account, e.headers)
            return Stop(Reason.RATE_LIMITED, self._until(e.reset_at))

    async def _resolve(
        self, account: Account, client: AccountClient, acct: str
    ) -> Resolved | Stop | None:
        hit = await resolver.cached(self.redis, account.host, acct)
        if hit != resolver.MISS:
            return hit  # type: ignore[return-value]
        grant = await self._grant(self.budgets.for_request(account.account, account.host))
        if isinstance(grant, Stop):
            return grant
        t0 = time.perf_counter()
        try:
            return await resolver.resolve(
                self.redis,
                client,
                account.host,
                account.domain,
                acct,
                ttl_s=self.settings.resolve_cache_ttl_s,
                miss_ttl_s=self.settings.resolve_miss_ttl_s,
            )
        except TargetError:
            return None
        finally:
            events.request_done("search", time.perf_counter() - t0)
            await self.limiter.answered(grant)

    async def _made_before(
        self, account: Account, client: AccountClient, t: FollowTarget, found: Resolved
    ) -> FollowResult | Stop | None:
        """What this message may have followed and not recorded: one request, where
        following again would spend a unit of the daily follow budget. None: not followed."""
        grant = await self._grant(self.budgets.for_request(account.account, account.host))
        if isinstance(grant, Stop):
            return grant
        t0 = time.perf_counter()
        try:
            rel = await client.relationship(found.id)
        finally:
            events.request_done("relationship", time.perf_counter() - t0)
            await self.limiter.answered(grant)
        return _made(t, rel) if rel.following or rel.requested else None

    async def _follow(
        self, account: Account, client: AccountClient, t: FollowTarget, found: Resolved
    ) -> FollowResult | Stop:
        grant = await self._grant(self.budgets.for_follow(account.account, account.host))
        if isinstance(grant, Stop):
            return grant
        t0 = time.perf_counter()
        # The instance counted the request whatever it answered; a follow it refused to create
        # is not one of the day's. A timeout may have created one: nothing is given back.
        unmade: tuple[Budget, ...] = ()
        try:
            rel = await client.follow(found.id)
        except TargetError as e:
            unmade = (self.budgets.follows,)
            return _skipped(t, e.code)
        except FollowCapError as e:
            unmade = (self.budgets.follows,)
            return Stop(Reason.FOLLOW_CAP, capped=True, budget=e.message)
        except RateLimitedError:
            unmade = (self.budgets.follows,)
            raise
        finally:
            events.request_done("follow", time.perf_counter() - t0)
            await self.limiter.answered(grant, refund=unmade)
        if rel.headers:
            await observe_headers(self.limiter, self.budgets, account.account, rel.headers)
        return _made(t, rel)

    async def _grant(self, charges: list[Charge]) -> Grant | Stop:
        grant = await self.limiter.acquire(charges)
        return grant if grant.ok else Stop(Reason.RATE_LIMITED, grant.wait_s, grant.limited_by)

    def _until(self, reset_at: float | None) -> float:
        if reset_at is None:
            return self.settings.unavailable_retry_s
        return max(reset_at - time.time(), 0.05)


def unavailable(settings: Settings) -> Stop:
    """The instance did not answer. The wait is the back-off's (`handlers.conclude`); the one
    here only ranks the stop in `graver`: the least the back-off waits, so that an empty budget
    that waits longer wins and the batch does not come back before its window."""
    return Stop(Reason.NETWORK_UNAVAILABLE, settings.unavailable_first_retry_s)


def graver(a: Stop | None, b: Stop) -> Stop:
    """Of two reasons to stop, the one that must win: erased, then revoked or capped, then
    the longest wait (a retry sooner would meet the same empty budget)."""
    if a is None:
        return b

    def rank(s: Stop) -> tuple[bool, bool, float]:
        return (s.reason == Reason.USER_ERASED, s.paused or s.capped, s.delay_s)

    return b if rank(b) > rank(a) else a


def _made(t: FollowTarget, rel: Relationship) -> FollowResult:
    """A follow the account has: done, or requested while a locked account has not approved."""
    state = FollowState.REQUESTED if rel.requested and not rel.following else FollowState.DONE
    return FollowResult(x_account_id=t.x_account_id, account=t.account, state=state)


def _skipped(t: FollowTarget, reason: str) -> FollowResult:
    return FollowResult(
        x_account_id=t.x_account_id, account=t.account, state=FollowState.SKIPPED, reason=reason
    )
