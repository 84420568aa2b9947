"""Business events of the Mastodon adapter: one function each, log line + counter, never raise."""

from __future__ import annotations

import contextlib
import logging

from hqx import metrics
from hqx.follow_events import FollowEvents

log = logging.getLogger(__name__)
SERVICE = "mastodon_adapter"
NETWORK = "mastodon"

_shared = FollowEvents(SERVICE, NETWORK, __name__)
follows_made = _shared.follows_made
follows_skipped = _shared.follows_skipped
follows_failed = _shared.follows_failed
batch_deferred = _shared.batch_deferred
request_done = _shared.request_done
account_paused = _shared.account_paused


def follow_cap_reached(user_id: str, remaining: int) -> None:
    with contextlib.suppress(Exception):
        metrics.FOLLOWS_FAILED.labels(SERVICE, NETWORK, "follow_cap").inc(remaining)
        log.warning("follow cap reached", extra={"user_id": user_id, "remaining": remaining})
