"""Lifecycle messages: matches, consent, migration completed, erase, purge audit."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hqx.messages.base import Message
from hqx.subjects import Network


class NetworkStats(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    network: Network
    followings_matched: int = 0
    already_followed: int = 0
    planned: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    followers_on_network: int = 0


class MatchFound(Message):
    schema_: Literal["hqx.match.found/v1"] = Field("hqx.match.found/v1", alias="schema")
    stats: tuple[NetworkStats, ...]


class ConsentChanged(Message):
    """Automatic reconnection of late joiners, per network (absent = unchanged)."""

    schema_: Literal["hqx.consent.changed/v1"] = Field("hqx.consent.changed/v1", alias="schema")
    auto_reconnect: dict[Network, bool]


class MigrationCompleted(Message):
    schema_: Literal["hqx.migration.completed/v1"] = Field(
        "hqx.migration.completed/v1", alias="schema"
    )


class UserEraseRequested(Message):
    schema_: Literal["hqx.user.erase/v1"] = Field("hqx.user.erase/v1", alias="schema")


class DataPurged(Message):
    """Audit: *that* some kinds of data were deleted, never their content."""

    schema_: Literal["hqx.data.purged/v1"] = Field("hqx.data.purged/v1", alias="schema")
    kinds: dict[str, int]  # e.g. {"graph_edges": 5300, "tokens": 2}
    trigger: str  # archive_unpacked | migration_completed | user_erase | sweep
