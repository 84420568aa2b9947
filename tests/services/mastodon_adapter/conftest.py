"""Builders for the Mastodon adapter tests: settings, a user row, an OAuth round trip."""

from __future__ import annotations

import urllib.parse
from typing import Any

import asyncpg
import pytest
import requests

from hqx.settings import ServiceSettings
from services.mastodon_adapter.settings import Settings


def adapter_settings(base: ServiceSettings, **overrides: Any) -> Settings:
    return Settings(
        **{**base.model_dump(), "allow_local_instances": True, "log_json": False, **overrides}
    )


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
