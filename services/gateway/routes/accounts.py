"""Linking network accounts (Bluesky app password, Mastodon OAuth) and unlinking them.

The adapters' linking code checks the credentials and stores the encrypted tokens; the gateway
then announces the link on the bus (tokens never travel on it).
"""

from __future__ import annotations

import importlib
import ipaddress
from types import ModuleType
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field, SecretStr

from hqx import subjects
from hqx.crypto import TokenCipher
from hqx.errors import HqxError, Reason
from hqx.messages import IdentityLinked, IdentityUnlinked
from hqx.subjects import Network
from services.gateway import events
from services.gateway.deps import CurrentUser, MaybeUser, SettingsDep, SvcDep
from services.gateway.errors import ApiError

router = APIRouter(tags=["accounts"])
MASTODON_CALLBACK = "/oauth/mastodon/callback"


class BlueskyIn(BaseModel):
    identifier: str = Field(min_length=3, max_length=253, description="handle, DID or e-mail")
    app_password: SecretStr = Field(min_length=1, max_length=100)
    pds_url: str | None = Field(None, max_length=300, description="empty: the default PDS")


class MastodonIn(BaseModel):
    instance: str = Field(min_length=3, max_length=300)


class LinkedOut(BaseModel):
    network: Network
    account: str
    handle: str | None = None


class AuthorizeOut(BaseModel):
    authorize_url: str


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise ApiError(Reason.NETWORK_UNAVAILABLE, "linking is not available yet", 503) from e


async def announce_link(svc: SvcDep, user: str, network: Network) -> LinkedOut:
    row = await svc.pool.fetchrow(
        "select account, handle, instance from identities where user_id = $1 and network = $2",
        user,
        network.value,
    )
    if row is None:
        raise ApiError(Reason.NOT_LINKED, "the account could not be linked", 409)
    await svc.publish(
        subjects.identity_linked(user),
        IdentityLinked(
            user_id=user,
            network=network,
            account=row["account"],
            handle=row["handle"],
            instance=row["instance"],
        ),
    )
    events.account_linked(network.value)
    return LinkedOut(network=network, account=row["account"], handle=row["handle"])


def pds_address(given: str | None, settings: SettingsDep) -> str:
    """The PDS to log in to. Only public https servers, so nobody makes us call our own network
    (local http servers are allowed in tests and development)."""
    raw = (given or "").strip().rstrip("/") or settings.default_pds_url
    parts = urlsplit(raw)
    host = parts.hostname or ""
    local = host in ("localhost",) or _is_ip(host)
    ok = parts.scheme in ("http", "https") and host and not parts.query and not parts.fragment
    if ok and not settings.bluesky_allow_local:
        ok = parts.scheme == "https" and not local
    if not ok:
        raise ApiError(Reason.INVALID_INSTANCE, "give the address of your Bluesky server", 422)
    return raw


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _link_error(e: HqxError, network: str) -> ApiError:
    """The adapter's reason, in the person's terms: credentials refused, or network down."""
    if e.code in (Reason.SESSION_REVOKED, Reason.INVALID_CREDENTIALS):
        return ApiError(Reason.INVALID_CREDENTIALS, f"{network} refused these credentials", 400)
    if e.code in (Reason.NETWORK_UNAVAILABLE, Reason.RATE_LIMITED):
        return ApiError(e.code, f"{network} is not answering: try again in a few minutes", 502)
    return ApiError(e.code, e.message, 400)


@router.post("/api/accounts/bluesky", response_model=LinkedOut, status_code=201)
async def link_bluesky(
    body: BlueskyIn, user: CurrentUser, svc: SvcDep, settings: SettingsDep
) -> LinkedOut:
    linking = _module("services.bluesky_adapter.linking")
    pds = pds_address(body.pds_url, settings)
    try:
        await linking.link_app_password(
            svc.pool,
            TokenCipher(settings.token_keys),
            user,
            body.identifier.strip(),
            body.app_password,
            pds,
        )
    except HqxError as e:
        raise _link_error(e, "Bluesky") from e
    except httpx.HTTPError as e:
        raise ApiError(
            Reason.NETWORK_UNAVAILABLE, "the Bluesky server is not answering", 502
        ) from e
    return await announce_link(svc, user, Network.BLUESKY)


def mastodon_settings(settings: SettingsDep):
    """The adapter's settings as the gateway runs it: our keys, our callback URL."""
    mod = _module("services.mastodon_adapter.settings")
    return mod.Settings().model_copy(
        update={
            "env": settings.env,
            "token_keys": settings.token_keys,
            "redirect_uri": settings.public_url.rstrip("/") + MASTODON_CALLBACK,
            "allow_local_instances": settings.mastodon_allow_local,
            "ca_bundle": settings.mastodon_ca_bundle,
        }
    )


@router.post("/api/accounts/mastodon", response_model=AuthorizeOut)
async def start_mastodon(
    body: MastodonIn, user: CurrentUser, svc: SvcDep, settings: SettingsDep
) -> AuthorizeOut:
    """Where to send the browser to authorize us on the person's instance."""
    linking = _module("services.mastodon_adapter.linking")
    try:
        url = await linking.start_link(
            pool=svc.pool,
            redis=svc.redis,
            settings=mastodon_settings(settings),
            user_id=user,
            address=body.instance,
        )
    except HqxError as e:
        raise _link_error(e, "Mastodon") from e
    return AuthorizeOut(authorize_url=str(url))


@router.get(MASTODON_CALLBACK, include_in_schema=False)
async def mastodon_callback(
    svc: SvcDep,
    settings: SettingsDep,
    user: MaybeUser,
    code: str = "",
    state: str = "",
    error: str = "",
) -> Response:
    if user is None:
        return RedirectResponse("/?error=not_authenticated", status_code=303)
    linking = _module("services.mastodon_adapter.linking")
    try:
        await linking.finish_link(
            pool=svc.pool,
            redis=svc.redis,
            settings=mastodon_settings(settings),
            user_id=user,
            state=state[:200],
            code=code or None,
            error=error or None,
        )
        await announce_link(svc, user, Network.MASTODON)
    except HqxError as e:
        return RedirectResponse(f"/?error={e.code.value}", status_code=303)
    return RedirectResponse("/?linked=mastodon", status_code=303)


@router.delete("/api/accounts/{network}", status_code=204)
async def unlink(
    network: Network, user: CurrentUser, svc: SvcDep, settings: SettingsDep
) -> Response:
    """Forget the account and its tokens; the directory entry goes with it (matcher)."""
    if network == Network.MASTODON:  # revokes the token on the instance too (best effort)
        linking = _module("services.mastodon_adapter.linking")
        found = await linking.unlink(
            pool=svc.pool, redis=svc.redis, settings=mastodon_settings(settings), user_id=user
        )
    else:
        status = await svc.pool.execute(
            "delete from identities where user_id = $1 and network = $2", user, network.value
        )
        found = not status.endswith(" 0")
    if not found:
        raise ApiError(Reason.NOT_LINKED, "no such linked account", 404)
    await svc.publish(
        subjects.identity_unlinked(user), IdentityUnlinked(user_id=user, network=network)
    )
    events.account_unlinked(network.value)
    return Response(status_code=204)
