"""Business events every network adapter reports: one method each, log line + counter, never
raise. Each adapter's `events.py` binds them to its service and network."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from hqx import ledger, metrics


class FollowEvents:
    def __init__(self, service: str, network: str, logger: str) -> None:
        self.service, self.network = service, network
        self.log = logging.getLogger(logger)

    def follows_made(self, user_id: str, n: int) -> None:
        with contextlib.suppress(Exception):
            metrics.FOLLOWS_MADE.labels(self.service, self.network).inc(n)
            self.log.info("follows made", extra={"user_id": user_id, "count": n})

    def follows_skipped(self, user_id: str, reason: str, n: int = 1) -> None:
        with contextlib.suppress(Exception):
            metrics.FOLLOWS_SKIPPED.labels(self.service, self.network, reason).inc(n)
            self.log.info(
                "follows skipped", extra={"user_id": user_id, "reason": reason, "count": n}
            )

    def follows_failed(self, user_id: str, reason: str, n: int = 1) -> None:
        with contextlib.suppress(Exception):
            metrics.FOLLOWS_FAILED.labels(self.service, self.network, reason).inc(n)
            self.log.warning(
                "follows failed", extra={"user_id": user_id, "reason": reason, "count": n}
            )

    def batch_deferred(
        self, user_id: str, reason: str, delay_s: float, budget: str | None = None
    ) -> None:
        with contextlib.suppress(Exception):
            metrics.FOLLOWS_DEFERRED.labels(self.service, self.network, reason).inc()
            if budget:
                metrics.BUDGET_WAITS.labels(self.network, budget).inc()
                metrics.BUDGET_WAIT_SECONDS.labels(self.network, budget).inc(delay_s)
            self.log.info(
                "follow batch deferred",
                extra={
                    "user_id": user_id,
                    "reason": reason,
                    "delay_s": round(delay_s, 3),
                    "budget": budget,
                },
            )

    def request_done(self, outcome: str, seconds: float) -> None:
        with contextlib.suppress(Exception):
            metrics.NETWORK_REQUESTS.labels(self.service, self.network, outcome).inc()
            metrics.NETWORK_REQUEST_SECONDS.labels(self.service, self.network).observe(seconds)

    def account_paused(self, user_id: str, reason: str) -> None:
        with contextlib.suppress(Exception):
            self.log.warning("account paused", extra={"user_id": user_id, "reason": reason})


async def report_allowed_rate(
    pool: asyncpg.Pool,
    network: str,
    per_account_per_minute: float,
    every_s: float = 30.0,
    service: str = "",
) -> None:
    """Keep `hqx_follows_allowed_per_minute` at what the budgets allow the accounts with
    pending follows (the "allowed" line beside follows made on the dashboards)."""
    while True:
        try:
            n = await ledger.accounts_with_pending(pool, network)
            metrics.FOLLOWS_ALLOWED_PER_MINUTE.labels(service, network).set(
                n * per_account_per_minute
            )
        except Exception:  # retried at the next tick; the gauge keeps its last value
            logging.getLogger(__name__).warning("allowed rate not updated", exc_info=True)
        await asyncio.sleep(every_s)
