"""Builders for the Mastodon adapter tests: settings, a user row, an OAuth round trip."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import requests

from hqx import db
from hqx.settings import ServiceSettings
from services.mastodon_adapter.settings import Settings
from tests.peers.mastodon_limits import LimitFront


def adapter_settings(base: ServiceSettings, **overrides: Any) -> Settings:
    return Settings(
        **{**base.model_dump(), "allow_local_instances": True, "log_json": False, **overrides}
    )


@pytest.fixture
def front(mastodon: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[LimitFront]:
    """The Mastodon peer behind the limit front; `indirect` parameters reach the front."""
    kw = getattr(request, "param", {})
    f = LimitFront(mastodon["base_url"], **kw).start()
    yield f
    f.stop()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.connect(database_url)
    yield p
    await p.close()


@pytest.fixture
def msettings(settings: ServiceSettings) -> Settings:
    return adapter_settings(settings)


async def make_user(pool: asyncpg.Pool, user_id: str) -> str:
    await pool.execute("insert into users (id) values ($1) on conflict do nothing", user_id)
    return user_id


def browser_authorize(http: requests.Session, authorize_url: str, username: str) -> dict[str, str]:
    """What the person's browser does on the peer's account picker: returns the callback query."""
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))
    base = authorize_url.split("/oauth/", 1)[0]
    r = http.post(
        f"{base}/oauth/authorize",
        allow_redirects=False,
        data={
            "username": username,
            "client_id": q["client_id"],
            "redirect_uri": q["redirect_uri"],
            "scope": q["scope"],
            "state": q["state"],
        },
        timeout=10,
    )
    assert r.status_code in (302, 303), r.text[:300]
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["location"]).query))


def remote(i: int) -> str:
    """The i-th seeded remote account of the peer (`remote{i:05d}@remote{1|2}.example`)."""
    return f"remote{i:05d}@remote{(i - 1) % 2 + 1}.example"


async def link_identity(
    pool: asyncpg.Pool, settings: Settings, user_id: str, instance: str, account: str, token: str
) -> None:
    """What `finish_link` leaves behind, without the OAuth dance (tested in test_linking)."""
    from hqx.crypto import TokenCipher

    await make_user(pool, user_id)
    await pool.execute(
        "insert into identities (user_id, network, account, instance, auth_kind, token_cipher)"
        " values ($1, 'mastodon', $2, $3, 'oauth', $4)",
        user_id,
        account,
        instance,
        TokenCipher(settings.token_keys).encrypt(json.dumps({"access_token": token})),
    )
