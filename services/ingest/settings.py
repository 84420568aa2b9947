"""Ingest settings (`HQX_INGEST_*`): the archive caps and how the object is read."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from hqx.settings import ServiceSettings
from services.ingest.limits import Limits


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HQX_INGEST_", extra="ignore")

    max_archive_bytes: int = Limits.max_archive_bytes
    max_entries: int = Limits.max_entries
    max_member_bytes: int = Limits.max_member_bytes
    max_total_bytes: int = Limits.max_total_bytes
    max_ratio: int = Limits.max_ratio
    # Archives handled at once by one replica (parsing is CPU-bound: scale with replicas).
    concurrency: int = 2
    fetch_chunks: int = 16  # object chunks (128 KiB each) fetched at a time
    heartbeat_s: float = 15.0  # in_progress while a big archive streams (ack_wait is 45 s)

    def limits(self) -> Limits:
        return Limits(
            max_archive_bytes=self.max_archive_bytes,
            max_entries=self.max_entries,
            max_member_bytes=self.max_member_bytes,
            max_total_bytes=self.max_total_bytes,
            max_ratio=self.max_ratio,
        )
