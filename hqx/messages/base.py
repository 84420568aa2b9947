"""The base of every bus message: a versioned, validated, tolerant pydantic model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hqx.subjects import check_user_id

UserId = Annotated[str, AfterValidator(check_user_id)]
# NOTE: X account ids reach 19 digits, beyond float precision: always decimal strings.
XAccountId = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,18}$")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Every message carries `schema` ("hqx.<noun>.<event>/vN") and the user it is about.

    Tolerant reader: unknown fields are ignored, so adding an optional field keeps v1.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    SCHEMA: ClassVar[str]

    user_id: UserId
    occurred_at: datetime = Field(default_factory=utcnow)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
