"""Graph messages: an archive's follow graph is stored (edges live in PostgreSQL, not here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hqx.messages.base import Message, XAccountId


class GraphIngested(Message):
    schema_: Literal["hqx.graph.ingested/v1"] = Field("hqx.graph.ingested/v1", alias="schema")
    owner_x_account_id: XAccountId
    owner_username: str | None = None
    following_count: int = Field(ge=0)
    follower_count: int = Field(ge=0)
    # Increases with each accepted upload of this user; the newest graph wins.
    graph_version: int = Field(ge=1)
