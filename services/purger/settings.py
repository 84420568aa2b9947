"""Purger settings (env prefix HQX_PURGER_), on top of the shared ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from hqx.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HQX_PURGER_", extra="ignore")

    # How often the sweep looks for data past its limit (raw archives use archive_max_age_s).
    sweep_interval_s: float = Field(300.0, gt=0)
    # Chunks of an upload that never got its meta (abandoned, crashed) and untouched this long
    # (a resumable upload paused longer restarts). The bucket's own max age caps every chunk
    # at archive_max_age_s whatever happens.
    abandoned_upload_s: float = Field(6 * 3600.0, gt=0)
    # An erase runs twice: at once, then again this long after the request, to catch what
    # in-flight handlers (which checked is_erased just before the tombstone) wrote meanwhile.
    # Longer than the longest ack_wait of the consumers that write per-user data.
    erase_settle_s: float = Field(150.0, ge=0)
    # A linked network without any planned follow after this long counts as done (no match).
    completion_grace_s: float = Field(3600.0, ge=0)
