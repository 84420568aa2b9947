"""The dead letter: a message a service could not process, kept whole with the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hqx.messages.base import utcnow


class DeadLetter(BaseModel):
    """Not a `Message`: its user id may be unknown (unparseable payload). Never holds a token."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    schema_: Literal["hqx.dead_letter/v1"] = Field("hqx.dead_letter/v1", alias="schema")
    service: str
    reason: str
    error_class: str | None = None
    error: str | None = None
    original_subject: str
    original_stream: str | None = None
    original_sequence: int | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    payload_b64: str
    attempts: int = 1
    dead_lettered_at: str = Field(default_factory=lambda: utcnow().isoformat())
