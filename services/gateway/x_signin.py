"""X sign-in (OAuth 2.0 authorization code + PKCE, Authlib) as the proof of an X account id.

We ask for the smallest scopes that let us read `/2/users/me`, read the id once and forget the
token: the proof is the fact, not the credential.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis
from authlib.integrations.httpx_client import AsyncOAuth2Client

from hqx.errors import Reason
from services.gateway.errors import ApiError
from services.gateway.settings import Settings

SCOPES = "users.read tweet.read"
STATE_TTL_S = 600


@dataclass(frozen=True)
class XIdentity:
    account_id: str
    username: str | None


def _redirect_uri(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + "/auth/x/callback"


def _client(settings: Settings) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=settings.x_client_id,
        client_secret=settings.x_client_secret.get_secret_value() or None,
        scope=SCOPES,
        redirect_uri=_redirect_uri(settings),
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic"
        if settings.x_client_secret.get_secret_value()
        else "none",
        timeout=15.0,
    )


async def start(redis: aioredis.Redis, settings: Settings, browser_binding: str) -> str:
    """The URL to send the browser to; PKCE verifier and state wait in Redis for the callback."""
    if not settings.x_client_id:
        raise ApiError(Reason.NOT_FOUND, "X sign-in is not configured", 404)
    verifier = secrets.token_urlsafe(48)
    async with _client(settings) as client:
        url, state = client.create_authorization_url(
            settings.x_authorize_url, code_verifier=verifier
        )
    record = json.dumps({"verifier": verifier, "binding": browser_binding})
    await redis.set(f"hqx:xoauth:{state}", record, ex=STATE_TTL_S)
    return str(url)


async def finish(
    redis: aioredis.Redis, settings: Settings, code: str, state: str, browser_binding: str
) -> XIdentity:
    """Exchange the code (once: the state is consumed) and read who signed in."""
    raw = await redis.getdel(f"hqx:xoauth:{state}") if state and len(state) < 200 else None
    if raw is None:
        raise ApiError(Reason.OAUTH_STATE_INVALID, "this sign-in link expired: start again", 400)
    record = json.loads(raw)
    if not secrets.compare_digest(record["binding"], browser_binding):
        raise ApiError(Reason.OAUTH_STATE_INVALID, "sign-in started in another browser", 400)
    try:
        async with _client(settings) as client:
            await client.fetch_token(
                settings.x_token_url, code=code, code_verifier=record["verifier"]
            )
            resp = await client.get(settings.x_api_url.rstrip("/") + "/2/users/me")
    except Exception as e:
        raise ApiError(Reason.INVALID_CREDENTIALS, "X did not confirm the sign-in", 400) from e
    if resp.status_code != 200:
        raise ApiError(Reason.INVALID_CREDENTIALS, "X did not confirm the sign-in", 400)
    data = resp.json().get("data") or {}
    account_id = str(data.get("id", ""))
    if not account_id.isdigit() or len(account_id) > 19 or account_id.startswith("0"):
        raise ApiError(Reason.MALFORMED_RESPONSE, "X returned an unreadable account", 502)
    return XIdentity(account_id, data.get("username"))
