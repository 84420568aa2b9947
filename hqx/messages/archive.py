"""Archive lifecycle messages: uploaded, unpacked, rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hqx.messages.base import Message


class ArchiveUploaded(Message):
    """An archive (full zip or browser-slimmed zip) sits in the `archives` object store."""

    schema_: Literal["hqx.archive.uploaded/v1"] = Field("hqx.archive.uploaded/v1", alias="schema")
    object_name: str = Field(min_length=1, max_length=256)
    size: int = Field(ge=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    slimmed: bool = False
    # Set when the uploader proved this X id by signing in with X; ingest refuses a mismatch.
    proven_x_account_id: str | None = None


class ArchiveUnpacked(Message):
    """Ingest is done with the raw archive (graph stored or archive rejected): delete it."""

    schema_: Literal["hqx.archive.unpacked/v1"] = Field("hqx.archive.unpacked/v1", alias="schema")
    object_name: str


class ArchiveRejected(Message):
    """A hostile or unreadable archive: stable reason code plus a message for the person."""

    schema_: Literal["hqx.archive.rejected/v1"] = Field("hqx.archive.rejected/v1", alias="schema")
    object_name: str
    reason: str
    message: str
