"""Matcher business events: one function each, a log line and a counter; never raises."""

from __future__ import annotations

import contextlib
import logging

from hqx import metrics

log = logging.getLogger(__name__)


def directory_changed(user_id: str, network: str, change: str) -> None:
    with contextlib.suppress(Exception):
        metrics.DIRECTORY_CHANGES.labels(network, change).inc()
        log.info(
            "directory changed", extra={"user_id": user_id, "network": network, "change": change}
        )


def claim_quarantined(user_id: str, network: str, reason: str) -> None:
    """Audit: a user claimed an X id another proven user holds in the directory."""
    with contextlib.suppress(Exception):
        metrics.DIRECTORY_QUARANTINED.labels(network, reason).inc()
        log.warning(
            "directory claim quarantined",
            extra={"user_id": user_id, "network": network, "reason": reason},
        )


def follows_planned(network: str, origin: str, count: int, users: int) -> None:
    if count <= 0:
        return
    with contextlib.suppress(Exception):
        metrics.FOLLOWS_PLANNED.labels(network, origin).inc(count)
        log.info(
            "follows planned",
            extra={"network": network, "origin": origin, "count": count, "users": users},
        )


def batches_published(network: str, count: int) -> None:
    if count <= 0:
        return
    with contextlib.suppress(Exception):
        metrics.FOLLOW_BATCHES_PUBLISHED.labels(network).inc(count)
        log.info("follow batches published", extra={"network": network, "count": count})


def event_skipped(user_id: str, event: str, reason: str) -> None:
    with contextlib.suppress(Exception):
        log.info("event skipped", extra={"user_id": user_id, "event": event, "reason": reason})
