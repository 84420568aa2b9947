"""Matcher settings (env prefix HQX_MATCHER_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from hqx.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HQX_MATCHER_", extra="ignore")

    # Targets per follow.requested message. Bluesky's applyWrites takes <= 200 writes; a Mastodon
    # follow is one resolve + one follow call (300 requests / 5 min per token): 40 keeps a batch
    # within one budget window, so an adapter never holds one message for long.
    bluesky_batch: int = 200
    mastodon_batch: int = 40
    # Messages handled at once per replica.
    concurrency: int = 8
    # The sweep sends planned rows not sent yet: reverse matches (late joiners), coalesced per
    # follower once they are this old, and anything a crash left between plan and publish.
    sweep_interval_s: float = 1.0
    reverse_settle_s: float = 2.0
    # NOTE: a follower's friends arrive one by one all day, so a reverse row is nearly always a
    # batch of its own (1.1 follows per batch on the exodus-day population), and each batch
    # costs an adapter cycle, a network call and two consumers of its follow.done. While one of
    # the follower's batches is still in flight (sent, not yet acted on), new reverse rows wait
    # for it, at most this long: idle, nothing changes; when the adapters lag, a follower's late
    # joiners go as one batch when the previous one is through instead of queueing one by one.
    reverse_in_flight_s: float = 600.0
    # The sweep finds owners through `dispatch_due` (`services/matcher/due.py`); a scan of
    # every unsent row, this often, finds any that no event made due (a crash, a resend).
    sweep_backstop_s: float = 60.0
    sweep_owners: int = 2000
    # match.found: at most this many users per sweep, each once its stats settled this long.
    stats_per_sweep: int = 100
    stats_settle_s: float = 1.0
    # ... and this long per edge of their graph. Measuring stats reads every edge of the graph,
    # and a big audience is dirtied again by every friend who joins: re-measured each second,
    # the audiences of the people with millions of followers were an eighth of what PostgreSQL
    # was busy with at an exodus peak. 2 M followers: at most every 30 s.
    stats_s_per_edge: float = 15e-6
