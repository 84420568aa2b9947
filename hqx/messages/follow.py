"""Follow messages: commands to a network adapter and the outcomes it reports."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hqx.messages.base import Message, XAccountId
from hqx.subjects import Network


class FollowTarget(BaseModel):
    """Someone to follow: their X id (ledger key) and their account on the network."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    x_account_id: XAccountId
    account: str = Field(min_length=3, max_length=512)  # DID, or user@instance


class FollowRequested(Message):
    schema_: Literal["hqx.follow.requested/v1"] = Field("hqx.follow.requested/v1", alias="schema")
    network: Network
    targets: tuple[FollowTarget, ...] = Field(min_length=1, max_length=200)
    # Plan generation (set by the matcher): the same targets planned again after a cancellation
    # (unlink + relink, consent off + on) are a new command, not a duplicate of the old one.
    plan: str | None = Field(None, max_length=64)

    def msg_id(self) -> str:
        """Content-derived Nats-Msg-Id: re-planning the same batch is dropped by JetStream."""
        h = hashlib.sha256(f"{self.user_id}|{self.network}".encode())
        if self.plan is not None:
            h.update(b"|plan:" + self.plan.encode())
        for t in sorted(self.targets, key=lambda t: t.account):
            h.update(b"|" + t.account.encode())
        return f"follow-{h.hexdigest()[:40]}"


class FollowState(StrEnum):
    PLANNED = "planned"
    DONE = "done"
    REQUESTED = "requested"  # locked account: a follow request awaits their approval
    SKIPPED = "skipped"
    FAILED = "failed"


class FollowResult(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    x_account_id: XAccountId
    account: str
    state: FollowState
    reason: str | None = None


class FollowDone(Message):
    """Outcomes of one batch (or part of it) on one network."""

    schema_: Literal["hqx.follow.done/v1"] = Field("hqx.follow.done/v1", alias="schema")
    network: Network
    results: tuple[FollowResult, ...]
