"""Business events of the Bluesky adapter: one function each, log line + counter, never raise."""

from __future__ import annotations

from hqx.follow_events import FollowEvents

SERVICE = "bluesky_adapter"
NETWORK = "bluesky"

_shared = FollowEvents(SERVICE, NETWORK, __name__)
follows_made = _shared.follows_made
follows_skipped = _shared.follows_skipped
follows_failed = _shared.follows_failed
batch_deferred = _shared.batch_deferred
request_done = _shared.request_done
account_paused = _shared.account_paused
