"""Both adapters run fewer late joiners' batches at once than people's own migrations."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hqx.service import Service
from hqx.settings import AdapterSettings
from hqx.subjects import CONSUMERS, follow_lane
from services.bluesky_adapter import app as bluesky_app
from services.bluesky_adapter.settings import Settings as BlueskySettings
from services.mastodon_adapter import app as mastodon_app
from services.mastodon_adapter.settings import Settings as MastodonSettings


def test_each_adapter_has_both_lanes_and_nothing_else_is_one() -> None:
    lanes = {spec.durable: follow_lane(spec) for spec in CONSUMERS if follow_lane(spec)}
    assert lanes == {
        "bluesky-adapter-follow-requested": "requested",
        "bluesky-adapter-follow-reconnect": "reconnect",
        "mastodon-adapter-follow-requested": "requested",
        "mastodon-adapter-follow-reconnect": "reconnect",
    }


@pytest.mark.parametrize(
    ("create", "settings"),
    [(bluesky_app.create, BlueskySettings), (mastodon_app.create, MastodonSettings)],
)
def test_the_late_joiners_lane_gets_its_own_share_of_handlers(
    create: Callable[[AdapterSettings], Service], settings: type[AdapterSettings]
) -> None:
    svc = create(settings(concurrency=6, reconnect_concurrency=3))
    workers = {s.config.durable_name: s.max_workers for s in svc.broker._subscribers}
    service = svc.name.replace("_", "-")
    assert workers == {f"{service}-follow-requested": 6, f"{service}-follow-reconnect": 3}
