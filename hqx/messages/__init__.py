"""Versioned bus messages, one module per family; `parse` validates a payload by its subject."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from hqx.messages.archive import ArchiveRejected, ArchiveUnpacked, ArchiveUploaded
from hqx.messages.base import Message
from hqx.messages.dead_letter import DeadLetter
from hqx.messages.follow import (
    FollowDone,
    FollowRequested,
    FollowResult,
    FollowState,
    FollowTarget,
)
from hqx.messages.graph import GraphIngested
from hqx.messages.identity import AccountPaused, IdentityLinked, IdentityProven, IdentityUnlinked
from hqx.messages.lifecycle import (
    ConsentChanged,
    DataPurged,
    MatchFound,
    MigrationCompleted,
    NetworkStats,
    UserEraseRequested,
)

ALL: tuple[type[Message], ...] = (
    ArchiveUploaded,
    ArchiveUnpacked,
    ArchiveRejected,
    GraphIngested,
    IdentityLinked,
    IdentityUnlinked,
    IdentityProven,
    AccountPaused,
    FollowRequested,
    FollowDone,
    MatchFound,
    ConsentChanged,
    MigrationCompleted,
    UserEraseRequested,
    DataPurged,
)


def schema_id(model: type[Message]) -> str:
    return str(model.model_fields["schema_"].default)


BY_SCHEMA: dict[str, type[Message]] = {schema_id(m): m for m in ALL}
_any = TypeAdapter(dict[str, Any])


def parse(payload: bytes, accepted: tuple[type[Message], ...]) -> Message:
    """Validate a raw payload against the accepted models, chosen by its `schema` field.

    Raises `hqx.errors.InvalidMessageError` with a stable reason code on any failure.
    """
    from hqx.errors import InvalidMessageError, Reason

    try:
        raw = _any.validate_json(payload)
    except ValueError as e:
        raise InvalidMessageError(Reason.BAD_JSON, str(e)[:300]) from e
    schema = raw.get("schema")
    model = next((m for m in accepted if schema_id(m) == schema), None)
    if model is None:
        raise InvalidMessageError(Reason.UNKNOWN_SCHEMA, f"schema {schema!r} not accepted here")
    try:
        return model.model_validate(raw)
    except ValueError as e:
        raise InvalidMessageError(Reason.SCHEMA_INVALID, str(e)[:500]) from e


__all__ = [
    "ALL",
    "BY_SCHEMA",
    "AccountPaused",
    "ArchiveRejected",
    "ArchiveUnpacked",
    "ArchiveUploaded",
    "ConsentChanged",
    "DataPurged",
    "DeadLetter",
    "FollowDone",
    "FollowRequested",
    "FollowResult",
    "FollowState",
    "FollowTarget",
    "GraphIngested",
    "IdentityLinked",
    "IdentityProven",
    "IdentityUnlinked",
    "MatchFound",
    "Message",
    "MigrationCompleted",
    "NetworkStats",
    "UserEraseRequested",
    "parse",
    "schema_id",
]
