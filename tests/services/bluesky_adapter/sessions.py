"""Session helpers for the tests: a real app password to revoke, an access token made old."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr

from hqx.crypto import TokenCipher
from hqx.settings import ServiceSettings
from services.bluesky_adapter import identity


@asynccontextmanager
async def app_password(
    pds: dict[str, Any], account: dict[str, Any]
) -> AsyncIterator[tuple[str, Callable[[], Awaitable[None]]]]:
    """A fresh app password of the account, and a function revoking it (as the person would)."""
    async with httpx.AsyncClient(base_url=pds["pdsUrl"], timeout=30) as c:
        r = await c.post(
            "/xrpc/com.atproto.server.createSession",
            json={"identifier": account["handle"], "password": account["password"]},
        )
        r.raise_for_status()
        auth = {"Authorization": f"Bearer {r.json()['accessJwt']}"}
        name = f"hqx-{account['name']}"
        r = await c.post(
            "/xrpc/com.atproto.server.createAppPassword", json={"name": name}, headers=auth
        )
        r.raise_for_status()

        async def revoke() -> None:
            rr = await c.post(
                "/xrpc/com.atproto.server.revokeAppPassword", json={"name": name}, headers=auth
            )
            rr.raise_for_status()

        yield r.json()["password"], revoke


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def age_access_token(pool: asyncpg.Pool, settings: ServiceSettings, user: str) -> str:
    """Make the stored access JWT look expired (as after two idle hours); returns the old session.

    Only the client reads `exp` before choosing to refresh; the refresh itself uses the
    untouched refresh JWT, so the PDS decides.
    """
    cipher = TokenCipher(settings.token_keys)
    ident = await identity.load(pool, user)
    assert ident is not None
    old = ident.session(cipher).get_secret_value()
    parts = old.split(":::")
    header, payload, sig = parts[2].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] = claims["iat"] - 60
    parts[2] = ".".join([header, _b64(json.dumps(claims).encode()), sig])
    await identity.save_session(pool, cipher, user, ident.did, SecretStr(":::".join(parts)))
    return old
