"""Identity messages: accounts linked on a network, X ids proven, accounts paused."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hqx.messages.base import Message, XAccountId
from hqx.subjects import Network


class IdentityLinked(Message):
    """A person linked a network account. Tokens never travel on the bus: they stay in Postgres.

    `account` is the stable id on the network: a DID on Bluesky, `user@instance` on Mastodon.
    """

    schema_: Literal["hqx.identity.linked/v1"] = Field("hqx.identity.linked/v1", alias="schema")
    network: Network
    account: str = Field(min_length=3, max_length=512)
    handle: str | None = None
    instance: str | None = None


class IdentityUnlinked(Message):
    schema_: Literal["hqx.identity.unlinked/v1"] = Field("hqx.identity.unlinked/v1", alias="schema")
    network: Network


class IdentityProven(Message):
    """The person signed in with X: this X account id is theirs (ARCHITECTURE §5)."""

    schema_: Literal["hqx.identity.proven/v1"] = Field("hqx.identity.proven/v1", alias="schema")
    x_account_id: XAccountId
    x_username: str | None = None


class AccountPaused(Message):
    """A linked account's session is revoked or expired: its follows wait for the person."""

    schema_: Literal["hqx.account.paused/v1"] = Field("hqx.account.paused/v1", alias="schema")
    network: Network
    reason: str
