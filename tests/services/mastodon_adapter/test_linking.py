"""Linking against the peer: app registered once, OAuth with state + PKCE, errors, unlink."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from hqx import db
from hqx.crypto import TokenCipher
from hqx.errors import Reason
from services.mastodon_adapter import linking
from services.mastodon_adapter.settings import Settings
from tests.services.mastodon_adapter.conftest import browser_authorize, make_user


@pytest.fixture
async def deps(msettings: Settings, fresh_database_url: str, redis_url: str):
    pool = await db.connect(fresh_database_url)
    redis = aioredis.from_url(redis_url)
    yield {"pool": pool, "redis": redis, "settings": msettings}
    await redis.aclose()
    await pool.close()


def _faults(peer: dict[str, Any], rule: dict[str, Any]) -> None:
    peer["http"].post(f"{peer['base_url']}/api/v1/_mock/faults", json=rule, timeout=10)


async def test_oauth_link_with_pkce_stores_encrypted_token(
    deps: dict[str, Any], mastodon: dict[str, Any], user_id: str
) -> None:
    pool: asyncpg.Pool = deps["pool"]
    await make_user(pool, user_id)
    typed = f"@Alice@{mastodon['domain'].upper()}/"
    url = await linking.start_link(**deps, user_id=user_id, address=typed)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["scope"] == "read write follow"
    cb = browser_authorize(mastodon["http"], url, "alice")
    assert cb["state"] == q["state"]

    link = await linking.finish_link(**deps, user_id=user_id, state=cb["state"], code=cb["code"])
    assert link.account == f"alice@{mastodon['domain']}"
    assert link.instance == f"http://{mastodon['domain']}" and link.software == "mastodon"
    row = await pool.fetchrow("select * from identities where user_id = $1", user_id)
    assert row["account"] == link.account and row["auth_kind"] == "oauth"
    assert b"access_token" not in row["token_cipher"]  # encrypted at rest
    token = json.loads(
        TokenCipher(deps["settings"].token_keys).decrypt(row["token_cipher"]).get_secret_value()
    )["access_token"]
    me = mastodon["http"].get(
        f"{mastodon['base_url']}/api/v1/accounts/verify_credentials",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert me.json()["username"] == "alice"

    # the state is single-use; the app is registered once per instance
    with pytest.raises(linking.LinkError) as e:
        await linking.finish_link(**deps, user_id=user_id, state=cb["state"], code=cb["code"])
    assert e.value.code == Reason.OAUTH_STATE_INVALID
    url2 = await linking.start_link(**deps, user_id=user_id, address=mastodon["domain"])
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url2).query)["client_id"] == [q["client_id"]]
    assert await pool.fetchval("select count(*) from mastodon_apps") == 1
    secret = await pool.fetchval("select secret_cipher from mastodon_apps")
    assert TokenCipher(deps["settings"].token_keys).decrypt(secret).get_secret_value()

    # unlink revokes the token on the instance and forgets it
    assert await linking.unlink(**deps, user_id=user_id)
    assert await pool.fetchval("select count(*) from identities where user_id = $1", user_id) == 0
    after = mastodon["http"].get(
        f"{mastodon['base_url']}/api/v1/accounts/verify_credentials",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert after.status_code == 401


async def test_user_denied_and_foreign_state(
    deps: dict[str, Any], mastodon: dict[str, Any], user_id: str
) -> None:
    await make_user(deps["pool"], user_id)
    url = await linking.start_link(**deps, user_id=user_id, address=mastodon["domain"])
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["state"]
    with pytest.raises(linking.LinkError) as e:
        await linking.finish_link(**deps, user_id="someone_else", state=state, code="x")
    assert e.value.code == Reason.OAUTH_STATE_INVALID
    url = await linking.start_link(**deps, user_id=user_id, address=mastodon["domain"])
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["state"]
    with pytest.raises(linking.LinkError) as e:
        await linking.finish_link(**deps, user_id=user_id, state=state, error="access_denied")
    assert e.value.code == Reason.USER_DENIED


async def test_instance_down(deps: dict[str, Any], user_id: str) -> None:
    with pytest.raises(linking.LinkError) as e:
        await linking.start_link(**deps, user_id=user_id, address="127.0.0.1:9")
    assert e.value.code == Reason.INSTANCE_UNREACHABLE


async def test_not_mastodon(deps: dict[str, Any], mastodon: dict[str, Any], user_id: str) -> None:
    _faults(
        mastodon,
        {
            "match": {"methods": ["GET"], "path_regex": "^/api/v1/instance$"},
            "effect": {"type": "status", "status": 404, "body": {"error": "nope"}},
        },
    )
    with pytest.raises(linking.LinkError) as e:
        await linking.start_link(**deps, user_id=user_id, address=mastodon["base_url"])
    assert e.value.code == Reason.NOT_MASTODON


async def test_registrations_closed(
    deps: dict[str, Any], mastodon: dict[str, Any], user_id: str
) -> None:
    _faults(
        mastodon,
        {
            "match": {"methods": ["POST"], "path_regex": "^/api/v1/apps$"},
            "effect": {
                "type": "status",
                "status": 403,
                "body": {"error": "This action is not allowed"},
            },
        },
    )
    with pytest.raises(linking.LinkError) as e:
        await linking.start_link(**deps, user_id=user_id, address=mastodon["base_url"])
    assert e.value.code == Reason.REGISTRATION_CLOSED
