"""Business events of the gateway: one function each, a log line and a counter, never raises."""

from __future__ import annotations

import logging

from hqx.metrics import GATEWAY_EVENTS

log = logging.getLogger(__name__)


def _count(event: str, detail: str = "") -> None:
    try:
        GATEWAY_EVENTS.labels(event, detail).inc()
        log.info(event.replace("_", " "), extra={"detail": detail} if detail else None)
    except Exception:  # noqa: S110  (an event must never break a request)
        pass


def account_created(kind: str) -> None:
    _count("account_created", kind)


def x_proven() -> None:
    _count("x_proven")


def upload_received(slimmed: bool) -> None:
    _count("upload_received", "slimmed" if slimmed else "full")


def upload_refused(reason: str) -> None:
    _count("upload_refused", reason)


def account_linked(network: str) -> None:
    _count("account_linked", network)


def account_unlinked(network: str) -> None:
    _count("account_unlinked", network)


def consent_changed() -> None:
    _count("consent_changed")


def erase_requested() -> None:
    _count("erase_requested")
