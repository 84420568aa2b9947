"""One delivery of a follow batch for one account: budget, list, applyWrites, record, publish.

Exactly once rests on three things: the ledger (only still-planned targets are acted on), the
repo's own follow records (listed before creating: nobody is followed twice) and record keys
derived from (owner, target) (a retried create collides instead of making a second record).
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis
from pydantic import SecretStr

from hqx import backoff, db, ledger, ratelimit
from hqx.crypto import TokenCipher
from hqx.errors import Reason
from hqx.messages import AccountPaused, FollowDone, FollowResult, FollowState, FollowTarget, Message
from hqx.outcomes import Done, Outcome, RetryLater, Skipped
from hqx.ratelimit import Charge, RateLimiter
from hqx.subjects import Network, account_paused, follow_done
from services.bluesky_adapter import events, follow_index, follows
from services.bluesky_adapter.client import (
    AccountClient,
    BlueskyError,
    MalformedResponseError,
    PdsConnections,
    RateLimitedError,
    RejectedError,
    SessionInvalidError,
    UnavailableError,
)
from services.bluesky_adapter.identity import Identity, pause, save_session
from services.bluesky_adapter.repo_locks import RepoLocks
from services.bluesky_adapter.settings import Settings

NETWORK = Network.BLUESKY
Publish = Callable[[str, Message, str], Awaitable[object]]


@dataclass
class Deps:
    """What a run needs; built once per process in app.py."""

    pool: asyncpg.Pool
    redis: aioredis.Redis
    limiter: RateLimiter
    cipher: TokenCipher
    settings: Settings
    publish: Publish
    repo_locks: RepoLocks = field(default_factory=RepoLocks)
    pds: PdsConnections = field(default_factory=PdsConnections)


class _Stop(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


class FollowRun:
    def __init__(self, deps: Deps, ident: Identity, attempt: int, sequence: int) -> None:
        self.d = deps
        self.ident = ident
        self.user = ident.user_id
        self.attempt = attempt
        self.sequence = sequence  # the message's, in its stream: what its back-off counts by
        self.host = urlsplit(ident.pds_url).netloc or ident.pds_url
        self.hour, self.day, self.requests = deps.settings.budgets()
        self.client = AccountClient(
            ident.pds_url,
            ident.session(deps.cipher),
            on_refresh=self._store_session,
            pools=deps.pds,
        )

    async def _store_session(self, session: SecretStr) -> None:
        await save_session(self.d.pool, self.d.cipher, self.user, self.ident.did, session)

    async def close(self) -> None:
        await self.client.close()

    # --- the run ------------------------------------------------------------------------------
    async def execute(self, targets: Sequence[FollowTarget]) -> Outcome:
        try:
            return await self._execute(targets)
        except _Stop as stop:
            return stop.outcome
        except asyncpg.ForeignKeyViolationError:
            return Skipped(Reason.USER_ERASED)  # erased while we ran: the user row is gone
        except BlueskyError as e:
            return await self._on_error(e)

    async def _execute(self, targets: Sequence[FollowTarget]) -> Outcome:
        existing = None
        if self.attempt == 1:
            subjects = [t.account for t in targets]
            existing = await follow_index.lookup(self.d.redis, self.did, subjects)
        if existing is None:
            existing = await self._list()
        p = follows.plan(self.did, targets, existing)
        await self._settle(p.done, FollowState.DONE)
        if p.already:
            await self._guard()
            await ledger.note_network_follows(
                self.d.pool, self.user, NETWORK, [t.account for t in p.already]
            )
            await self._settle(p.already, FollowState.DONE, Reason.ALREADY_FOLLOWING)
        await self._settle(p.invalid, FollowState.SKIPPED, Reason.INVALID_TARGET)
        queue = deque(follows.chunks(p.creates, self.d.settings.batch_size))
        while queue:
            await self._create(queue.popleft(), queue)
        return Done()

    async def _create(self, chunk: list[follows.Create], queue: deque) -> None:
        """Spend, then write, holding the repo's lock: a crash wastes one chunk's points at
        most (points spent for batches queued behind the lock would be lost with the process).
        Under the lock, targets another batch settled meanwhile (a duplicate) are dropped."""
        started = time.perf_counter()
        try:
            async with self.d.repo_locks.hold(self.did):
                planned = await ledger.still_planned(
                    self.d.pool, self.user, NETWORK, [c.target for c in chunk]
                )
                keep = {t.x_account_id for t in planned}
                chunk = [c for c in chunk if c.target.x_account_id in keep]
                if not chunk:
                    return
                grant = await self._spend(len(chunk))
                if grant.units < len(chunk):
                    queue.appendleft(chunk[grant.units :])
                    chunk = chunk[: grant.units]
                await self._guard()
                started = time.perf_counter()
                await self.client.create_follows(self.did, chunk)
        except RejectedError as e:
            events.request_done("client_error", time.perf_counter() - started)
            if len(chunk) > 1:  # one bad record fails the whole call: find it by halves
                half = len(chunk) // 2
                queue.extendleft([chunk[half:], chunk[:half]])
            else:
                await self._settle([chunk[0].target], FollowState.SKIPPED, e.code)
            return
        except (UnavailableError, MalformedResponseError) as e:
            events.request_done("server_error", time.perf_counter() - started)
            await self._after_doubtful_write(chunk, queue, e)
            return
        events.request_done("ok", time.perf_counter() - started)
        await self._observe(self.client.last_headers)
        await follow_index.add(self.d.redis, self.did, {c.target.account: c.rkey for c in chunk})
        await self._settle([c.target for c in chunk], FollowState.DONE)

    async def _after_doubtful_write(
        self, chunk: list[follows.Create], queue: deque, error: BlueskyError
    ) -> None:
        """A 5xx or unreadable answer: the PDS answers 500 to a create whose key exists, so
        list the repo and keep what landed; retry the rest now if we progressed, else later."""
        existing = await self._list()
        landed = [c for c in chunk if c.target.account in existing]
        rest = [c for c in chunk if c.target.account not in existing]
        await self._settle([c.target for c in landed], FollowState.DONE)
        if not rest:
            return
        if landed:
            queue.appendleft(rest)
            return
        if isinstance(error, MalformedResponseError):
            if self.attempt >= self.d.settings.max_malformed_attempts:
                await self._settle([c.target for c in rest], FollowState.FAILED, error.code)
                return
        raise error

    # --- budgets, listing, guards ---------------------------------------------------------------
    def _charges(self, with_writes: bool) -> list[Charge]:
        out = [self.requests.per_call(self.host)]
        if with_writes:
            out += [self.hour.per_unit(self.did, "create"), self.day.per_unit(self.did, "create")]
        return out

    async def _spend(self, creates: int) -> ratelimit.Grant:
        grant = await self.d.limiter.acquire(
            self._charges(creates > 0), units=creates, min_units=min(1, creates)
        )
        if not grant.ok:
            events.batch_deferred(self.user, Reason.RATE_LIMITED, grant.wait_s, grant.limited_by)
            raise _Stop(RetryLater(grant.wait_s, Reason.RATE_LIMITED))
        return grant

    async def _list(self) -> dict[str, str]:
        async def before_page() -> None:
            await self._guard()
            await self._spend(0)

        existing = await self.client.list_follows(self.did, before_page)
        await follow_index.put(self.d.redis, self.did, existing, self.d.settings.follow_index_ttl_s)
        return existing

    async def _guard(self) -> None:
        """Right before each network call: an erase during a run stops the follows."""
        if await db.is_erased(self.d.pool, self.user):
            raise _Stop(Skipped(Reason.USER_ERASED))

    async def _observe(self, headers: dict[str, str] | object) -> None:
        parsed = ratelimit.parse_headers(headers)  # type: ignore[arg-type]
        if parsed is None:
            return
        window = ratelimit.policy_window(headers)  # type: ignore[arg-type]
        budget, account = {
            self.hour.window_s: (self.hour, self.did),
            self.day.window_s: (self.day, self.did),
        }.get(window or 0.0, (self.requests, self.host))
        limit, remaining, reset = parsed
        await self.d.limiter.observe(
            budget, account, limit=limit, remaining=remaining, reset_at=reset
        )

    # --- outcomes ----------------------------------------------------------------------------
    async def _on_error(self, e: BlueskyError) -> Outcome:
        if isinstance(e, RateLimitedError):
            await self._observe(e.headers)
            parsed = ratelimit.parse_headers(e.headers)
            wait = max(1.0, parsed[2] - time.time()) if parsed else 60.0
            events.request_done("rate_limited", 0.0)
            events.batch_deferred(self.user, e.code, wait, "server")
            return RetryLater(wait, e.code)
        if isinstance(e, SessionInvalidError):
            if await pause(self.d.pool, self.user, e.code):
                events.account_paused(self.user, e.code)
                await self.d.publish(
                    account_paused(NETWORK, self.user),
                    AccountPaused(user_id=self.user, network=NETWORK, reason=e.code),
                    f"bsky-paused-{self.user}-{int(time.time() // 3600)}",
                )
            return Skipped(e.code)
        await follow_index.drop(self.d.redis, self.did)
        s = self.d.settings
        delay = await backoff.unavailable_delay(
            self.d.redis, NETWORK, self.sequence, s.first_backoff_s, s.max_backoff_s
        )
        events.batch_deferred(self.user, e.code, delay)
        return RetryLater(delay, e.code)

    async def _settle(
        self, targets: Sequence[FollowTarget], state: FollowState, reason: str | None = None
    ) -> None:
        """Record outcomes in the ledger, then publish them (deduplicated by content)."""
        if not targets:
            return
        results = [
            FollowResult(x_account_id=t.x_account_id, account=t.account, state=state, reason=reason)
            for t in targets
        ]
        await ledger.record(self.d.pool, self.user, NETWORK, results)
        h = hashlib.sha256(self.user.encode())
        for r in results:
            h.update(f"|{r.x_account_id}:{r.state}:{r.reason}".encode())
        await self.d.publish(
            follow_done(NETWORK, self.user),
            FollowDone(user_id=self.user, network=NETWORK, results=tuple(results)),
            f"bsky-done-{h.hexdigest()[:40]}",
        )
        if state == FollowState.DONE and reason is None:
            events.follows_made(self.user, len(results))
        elif state == FollowState.FAILED:
            events.follows_failed(self.user, reason or "unknown", len(results))
        else:
            events.follows_skipped(self.user, reason or str(state), len(results))

    @property
    def did(self) -> str:
        return self.ident.did
