"""Linking with an app password against the real PDS: one login, the session encrypted at rest."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

from hqx.crypto import TokenCipher
from hqx.embedded import free_port
from hqx.settings import ServiceSettings
from services.bluesky_adapter import identity
from services.bluesky_adapter.linking import LinkError, link_app_password
from tests.services.bluesky_adapter.conftest import new_user


async def test_link_stores_an_encrypted_session(
    pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    alice = bsky_pds["accounts"][0]
    user = await new_user(pool)
    cipher = TokenCipher(settings.token_keys)
    did, handle = await link_app_password(
        pool, cipher, user, alice["handle"], alice["appPassword"], bsky_pds["pdsUrl"]
    )
    assert (did, handle) == (alice["did"], alice["handle"])
    row = await pool.fetchrow("select * from identities where user_id = $1", user)
    assert row["network"] == "bluesky" and row["status"] == "active"
    assert row["instance"] == bsky_pds["pdsUrl"] and row["auth_kind"] == "app_password"
    raw = bytes(row["token_cipher"])
    ident = await identity.load(pool, user)
    assert ident is not None
    session = ident.session(cipher).get_secret_value()
    assert did in session and alice["appPassword"] not in session  # never the password
    # NOTE: the session's own tokens, not a prefix: "eyJ" (a JWT's first bytes) also turns up
    # in random base64 by chance (a ciphertext of ~600 characters: about 1 in 400; seen on CI).
    jwts = re.findall(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", session)
    assert jwts and all(j.encode() not in raw for j in jwts)
    assert did.encode() not in raw and alice["appPassword"].encode() not in raw


async def test_wrong_password_and_unreachable_pds_have_clear_codes(
    pool: asyncpg.Pool, settings: ServiceSettings, bsky_pds: dict[str, Any]
) -> None:
    user = await new_user(pool)
    cipher = TokenCipher(settings.token_keys)
    with pytest.raises(LinkError) as e:
        await link_app_password(
            pool, cipher, user, "bob.test", "nope-nope-nope-nope", bsky_pds["pdsUrl"]
        )
    assert e.value.code == "invalid_credentials"
    port = free_port()
    with pytest.raises(LinkError) as e:
        await link_app_password(pool, cipher, user, "bob.test", "x", f"http://127.0.0.1:{port}")
    assert e.value.code == "network_unavailable"
    assert await identity.load(pool, user) is None
