"""Settings of the Bluesky adapter (env prefix HQX_BLUESKY_ADAPTER_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from hqx import ratelimit
from hqx.ratelimit import DEFAULT_HEADROOM, Budget
from hqx.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="HQX_BLUESKY_ADAPTER_", extra="ignore", populate_by_name=True
    )

    # Share of each per-account budget left for the person's own use during a migration.
    headroom: float = DEFAULT_HEADROOM
    # Creates per applyWrites call (the PDS refuses more than 200).
    batch_size: int = 200
    # How long a listing of a repo's follows is reused by later batches of the same account.
    follow_index_ttl_s: float = 300.0
    # Deliveries of one batch that may end in an unreadable response before it is failed.
    max_malformed_attempts: int = 5
    # Waits between a batch's retries when the PDS is down: the first, doubled on each repeat
    # up to the longest (`hqx.backoff`).
    first_backoff_s: float = 2.0
    max_backoff_s: float = 300.0
    # Batches handled at once by one replica.
    concurrency: int = 8
    # Benchmarks only: simulated networks run their windows this many times faster.
    time_compression: float = 1.0
    # Override of the durable's ack_wait (tests that kill the process shorten the redelivery).
    ack_wait_s: float | None = None

    def budgets(self) -> tuple[Budget, Budget, Budget]:
        """Per-account repo writes (hour, day) and per-host requests, with head-room."""
        h, f = self.headroom, self.time_compression
        return (
            ratelimit.BLUESKY_WRITE_HOUR.with_headroom(h).scaled(f),
            ratelimit.BLUESKY_WRITE_DAY.with_headroom(h).scaled(f),
            ratelimit.BLUESKY_HOST_REQUESTS.with_headroom(h).scaled(f),
        )
