"""Settings of the Mastodon adapter (env prefix `HQX_MASTODON_ADAPTER_`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from hqx.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HQX_MASTODON_ADAPTER_", extra="ignore")

    # Where instances send the person back after OAuth (the gateway's callback route).
    redirect_uri: str = "http://127.0.0.1:8000/oauth/mastodon/callback"
    # Tests and development only: accept localhost / private addresses, served over http.
    allow_local_instances: bool = False
    # CA bundle for instances with a private CA (tests with a TLS peer); default: system CAs.
    ca_bundle: str | None = None
    oauth_state_ttl_s: int = 600
    server_info_ttl_s: int = 3600
    # Share of every Mastodon limit left to the person's own use of their account.
    headroom: float = 0.10
    # Time compression for tests and benchmarks: every limit window is divided by it.
    time_compression: float = 1.0
    resolve_cache_ttl_s: int = 7 * 86400
    resolve_miss_ttl_s: int = 3600
    # A handler stops making calls after this long and re-delivers the rest (ack_wait is 120 s).
    batch_time_limit_s: float = 60.0
    # How long a follow's claim outlives a killed holder (longer than a batch's time limit and
    # its last flush), and when a batch that met another delivery's claim comes back.
    follow_claim_ttl_s: float = 150.0
    claim_retry_s: float = 5.0
    # When a redelivery takes over its killed delivery's claims (asking the instance whether it
    # followed): a live one makes no call after its time limit plus a call's timeout (20 s).
    claim_quiet_s: float = 80.0
    # The longest a call stays unanswered (its timeout, 20 s, after waiting for a thread): a
    # call granted before a window's boundary counts in the next until answered, at most this.
    call_in_flight_s: float = 80.0
    # Back-off when an instance answers 5xx or not at all: the first retry of a batch comes
    # soon (most are one slow answer at a busy moment), the wait doubles on each repeat, up
    # to the longest; a 429 without a reset time also waits the longest.
    unavailable_first_retry_s: float = 2.0
    unavailable_retry_s: float = 30.0
    # Batches handled at once per lane, and follows of one batch in flight at once.
    concurrency: int = 8
    follows_in_flight: int = 4

    @property
    def verify(self) -> bool | str:
        return self.ca_bundle or True
