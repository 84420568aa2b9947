"""Business events of the Mastodon adapter: one function each, log line + counter, never raise."""

from __future__ import annotations

import contextlib
import logging

from hqx import metrics

log = logging.getLogger(__name__)
SERVICE = "mastodon_adapter"
NETWORK = "mastodon"


def follows_made(user_id: str, n: int) -> None:
    with contextlib.suppress(Exception):
        metrics.FOLLOWS_MADE.labels(SERVICE, NETWORK).inc(n)
        log.info("follows made", extra={"user_id": user_id, "count": n})


def follows_skipped(user_id: str, reason: str, n: int = 1) -> None:
    with contextlib.suppress(Exception):
        metrics.FOLLOWS_SKIPPED.labels(SERVICE, NETWORK, reason).inc(n)
        log.info("follows skipped", extra={"user_id": user_id, "reason": reason, "count": n})


def batch_deferred(user_id: str, reason: str, delay_s: float, budget: str | None = None) -> None:
    with contextlib.suppress(Exception):
        metrics.FOLLOWS_DEFERRED.labels(SERVICE, NETWORK, reason).inc()
        if budget:
            metrics.BUDGET_WAITS.labels(NETWORK, budget).inc()
            metrics.BUDGET_WAIT_SECONDS.labels(NETWORK, budget).inc(delay_s)
        log.info(
            "follow batch deferred",
            extra={
                "user_id": user_id,
                "reason": reason,
                "delay_s": round(delay_s, 3),
                "budget": budget,
            },
        )


def request_done(outcome: str, seconds: float) -> None:
    with contextlib.suppress(Exception):
        metrics.NETWORK_REQUESTS.labels(SERVICE, NETWORK, outcome).inc()
        metrics.NETWORK_REQUEST_SECONDS.labels(SERVICE, NETWORK).observe(seconds)


def follow_cap_reached(user_id: str, remaining: int) -> None:
    with contextlib.suppress(Exception):
        metrics.FOLLOWS_FAILED.labels(SERVICE, NETWORK, "follow_cap").inc(remaining)
        log.warning("follow cap reached", extra={"user_id": user_id, "remaining": remaining})


def account_paused(user_id: str, reason: str) -> None:
    with contextlib.suppress(Exception):
        metrics.FOLLOWS_FAILED.labels(SERVICE, NETWORK, reason).inc()
        log.warning("account paused", extra={"user_id": user_id, "reason": reason})
