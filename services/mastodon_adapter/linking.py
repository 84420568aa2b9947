"""Linking a Mastodon account (called by the gateway): detect, register once, OAuth with PKCE.

`start_link` -> the URL to send the person to; `finish_link` (the OAuth callback) -> the linked
`acct`, with the token encrypted in `identities`; `unlink` revokes the token and forgets it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass

import asyncpg
import redis.asyncio as aioredis

from hqx.crypto import TokenCipher
from hqx.errors import HqxError, Reason
from services.mastodon_adapter import server
from services.mastodon_adapter.client import (
    InstanceClient,
    MastodonCallError,
    ServerInfo,
    pkce_pair,
)
from services.mastodon_adapter.instance import normalize
from services.mastodon_adapter.settings import Settings

STATE_KEY = "hqx:oauth:mastodon:{}"
SERVER_KEY = "hqx:mastodon:server:{}"


class LinkError(HqxError):
    """Linking failed for a reason the person can read (`code`)."""

    http_status = 422


@dataclass(frozen=True)
class Link:
    account: str  # user@domain: the stable id used by the directory and the ledger
    handle: str
    instance: str  # base URL
    software: str


async def detect(client: InstanceClient) -> ServerInfo:
    """`/api/v1/instance` + nodeinfo + OAuth metadata -> what the server is and its endpoints."""
    try:
        inst = await client.get_json("/api/v1/instance") or {}
        links = await client.get_json("/.well-known/nodeinfo")
        nodeinfo = None
        if isinstance(links, dict):
            hrefs = [x.get("href") for x in links.get("links") or [] if isinstance(x, dict)]
            href = next((h for h in reversed(hrefs) if isinstance(h, str)), None)
            nodeinfo = await client.get_json(href) if href else None
        sw = server.classify(inst, nodeinfo)
        if not sw.supported:
            raise LinkError(Reason.NOT_MASTODON, sw.note)
        oauth = await client.get_json("/.well-known/oauth-authorization-server") or {}
    except MastodonCallError as e:
        raise LinkError(Reason.INSTANCE_UNREACHABLE, e.message) from e
    base = client.base_url
    domain = str(inst.get("uri") or inst.get("domain") or base.split("://", 1)[1])
    domain = domain.split("://", 1)[-1].rstrip("/").lower()
    return ServerInfo(
        software=sw.name,
        version=sw.version,
        domain=domain,
        pkce="S256" in (oauth.get("code_challenge_methods_supported") or []),
        authorize_endpoint=oauth.get("authorization_endpoint") or f"{base}/oauth/authorize",
        token_endpoint=oauth.get("token_endpoint") or f"{base}/oauth/token",
        revocation_endpoint=oauth.get("revocation_endpoint") or f"{base}/oauth/revoke",
    )


async def server_info(
    redis: aioredis.Redis, settings: Settings, client: InstanceClient
) -> ServerInfo:
    key = SERVER_KEY.format(client.base_url)
    cached = await redis.get(key)
    if cached:
        return ServerInfo(**json.loads(cached))
    info = await detect(client)
    await redis.set(key, json.dumps(asdict(info)), ex=settings.server_info_ttl_s)
    return info


async def app_credentials(
    pool: asyncpg.Pool,
    cipher: TokenCipher,
    settings: Settings,
    client: InstanceClient,
    software: str,
) -> tuple[str, str]:
    """Our app on this instance, registered once and cached (secret encrypted)."""
    row = await pool.fetchrow(
        "select client_id, secret_cipher from mastodon_apps"
        " where instance = $1 and redirect_uri = $2",
        client.base_url,
        settings.redirect_uri,
    )
    if row:
        return row["client_id"], cipher.decrypt(row["secret_cipher"]).get_secret_value()
    try:
        cid, secret = await client.register_app(settings.redirect_uri)
    except MastodonCallError as e:
        raise LinkError(e.code, e.message) from e
    # NOTE: two replicas registering at once both succeed; the first row wins, both work.
    row = await pool.fetchrow(
        "insert into mastodon_apps (instance, client_id, secret_cipher, software, redirect_uri)"
        " values ($1, $2, $3, $4, $5) on conflict (instance) do update set"
        " client_id = excluded.client_id, secret_cipher = excluded.secret_cipher,"
        " software = excluded.software, redirect_uri = excluded.redirect_uri"
        " where mastodon_apps.redirect_uri is distinct from excluded.redirect_uri"
        " returning client_id",
        client.base_url,
        cid,
        cipher.encrypt(secret),
        software,
        settings.redirect_uri,
    )
    if row is None:  # another replica registered first: use theirs
        return await app_credentials(pool, cipher, settings, client, software)
    return cid, secret


async def start_link(
    *, pool: asyncpg.Pool, redis: aioredis.Redis, settings: Settings, user_id: str, address: str
) -> str:
    """Return the instance's authorize URL for this person; the state lives in Redis (TTL)."""
    inst = normalize(address, allow_local=settings.allow_local_instances)
    client = InstanceClient(inst.base_url, verify=settings.verify)
    try:
        info = await server_info(redis, settings, client)
        cipher = TokenCipher(settings.token_keys)
        cid, _ = await app_credentials(pool, cipher, settings, client, info.software)
    finally:
        client.close()
    state = secrets.token_urlsafe(24)
    verifier, challenge = pkce_pair() if info.pkce else (None, None)
    payload = {"user_id": user_id, "instance": inst.base_url, "verifier": verifier}
    await redis.set(STATE_KEY.format(state), json.dumps(payload), ex=settings.oauth_state_ttl_s)
    return client.authorize_url(info, cid, settings.redirect_uri, state, challenge)


async def finish_link(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    settings: Settings,
    user_id: str,
    state: str,
    code: str | None = None,
    error: str | None = None,
) -> Link:
    """The OAuth callback: check the state (once), exchange the code, store the token encrypted."""
    raw = await redis.getdel(STATE_KEY.format(state)) if state else None
    saved = json.loads(raw) if raw else None
    if not saved or saved["user_id"] != user_id:
        raise LinkError(Reason.OAUTH_STATE_INVALID, "this link attempt expired or is not yours")
    if error or not code:
        raise LinkError(Reason.USER_DENIED, "authorization was not granted on the instance")
    client = InstanceClient(saved["instance"], verify=settings.verify)
    cipher = TokenCipher(settings.token_keys)
    try:
        info = await server_info(redis, settings, client)
        cid, secret = await app_credentials(pool, cipher, settings, client, info.software)
        token = await client.exchange_code(
            info, cid, secret, code, settings.redirect_uri, saved["verifier"]
        )
        me = await _whoami(client.base_url, token, settings)
    except MastodonCallError as e:
        raise LinkError(e.code, e.message) from e
    finally:
        client.close()
    username = str(me["acct"]).split("@", 1)[0]
    link = Link(
        f"{username}@{info.domain}".lower(),
        f"@{username}@{info.domain}",
        client.base_url,
        info.software,
    )
    await pool.execute(
        "insert into identities (user_id, network, account, handle, instance, auth_kind,"
        " token_cipher, status) values ($1, 'mastodon', $2, $3, $4, 'oauth', $5, 'active')"
        " on conflict (user_id, network) do update set account = excluded.account,"
        " handle = excluded.handle, instance = excluded.instance, auth_kind = 'oauth',"
        " token_cipher = excluded.token_cipher, status = 'active', status_reason = null,"
        " updated_at = now()",
        user_id,
        link.account,
        link.handle,
        link.instance,
        cipher.encrypt(json.dumps({"access_token": token})),
    )
    await pool.execute("delete from mastodon_accounts where user_id = $1", user_id)
    return link


async def _whoami(base_url: str, token: str, settings: Settings) -> dict:
    from services.mastodon_adapter.client import AccountClient

    acc = AccountClient(base_url, token, verify=settings.verify)
    try:
        return await acc.verify_credentials()
    finally:
        acc.close()


async def unlink(
    *, pool: asyncpg.Pool, redis: aioredis.Redis, settings: Settings, user_id: str
) -> bool:
    """Revoke the token on the instance (best effort) and delete it. False if nothing linked."""
    row = await pool.fetchrow(
        "select instance, token_cipher from identities where user_id = $1 and network = 'mastodon'",
        user_id,
    )
    if row is None:
        return False
    cipher = TokenCipher(settings.token_keys)
    if row["token_cipher"]:
        token = json.loads(cipher.decrypt(row["token_cipher"]).get_secret_value())["access_token"]
        client = InstanceClient(row["instance"], verify=settings.verify)
        try:
            info = await server_info(redis, settings, client)
            app = await pool.fetchrow(
                "select client_id, secret_cipher from mastodon_apps where instance = $1",
                row["instance"],
            )
            if app:
                secret = cipher.decrypt(app["secret_cipher"]).get_secret_value()
                await client.revoke(info, app["client_id"], secret, token)
        except (MastodonCallError, LinkError):
            pass  # NOTE: the instance is down: the token is forgotten anyway, below
        finally:
            client.close()
    await pool.execute(
        "delete from identities where user_id = $1 and network = 'mastodon'", user_id
    )
    return True
