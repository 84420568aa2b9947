"""What a handler returns: the subscriber wrapper maps each to ack / nak(delay)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Done:
    """Processed (or already processed: a redelivery). Ack."""

    detail: str | None = None


@dataclass(frozen=True)
class Skipped:
    """Nothing to do, for a stated reason (e.g. erased user, stale version). Ack."""

    reason: str


@dataclass(frozen=True)
class RetryLater:
    """Not now (budget empty, network down): nak with this delay; never sleep in a handler."""

    delay_s: float
    reason: str


Outcome = Done | Skipped | RetryLater
