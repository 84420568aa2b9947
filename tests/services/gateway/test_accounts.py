"""Linking through the API: Bluesky app password on the real local PDS; unlink."""

from __future__ import annotations

import urllib.parse
from typing import Any

from hqx import subjects
from hqx.messages import IdentityLinked, IdentityUnlinked, parse
from tests.services.gateway.conftest import Gateway, gateway_settings, serve
from tests.services.mastodon_adapter.conftest import browser_authorize


async def test_link_and_unlink_bluesky_on_the_pds(settings, bsky_pds: dict[str, Any]) -> None:
    account = bsky_pds["accounts"][1]
    password = account.get("appPassword") or account["password"]
    async for gw in serve(gateway_settings(settings, bluesky_allow_local=True)):
        await _link_unlink(gw, bsky_pds, account, password)


async def _link_unlink(gw: Gateway, pds: dict, account: dict, password: str) -> None:
    async with gw.browser(signed_in=True) as c:
        user = (await c.get("/api/session")).json()["user_id"]
        bad = {
            "identifier": account["handle"],
            "app_password": "wrong-wrong-wrong",
            "pds_url": pds["pdsUrl"],
        }
        r = await c.post("/api/accounts/bluesky", json=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_credentials", r.text
        good = bad | {"app_password": password}
        r = await c.post("/api/accounts/bluesky", json=good)
        assert r.status_code == 201, r.text
        did = r.json()["account"]
        assert did.startswith("did:") and r.json()["handle"] == account["handle"]
        me = (await c.get("/api/me")).json()
        assert me["identities"][0]["network"] == "bluesky" and me["identities"][0]["account"] == did
        token = await gw.svc.pool.fetchval(
            "select token_cipher from identities where user_id = $1", user
        )
        assert token and password.encode() not in bytes(token)  # encrypted at rest
        msg = await gw.svc.js.get_last_msg("EVENTS", subjects.identity_linked(user))
        linked = parse(msg.data, (IdentityLinked,))
        assert isinstance(linked, IdentityLinked) and linked.account == did
        assert password not in msg.data.decode()  # tokens never travel on the bus

        assert (await c.delete("/api/accounts/bluesky")).status_code == 204
        assert (await c.get("/api/me")).json()["identities"] == []
        r = await c.delete("/api/accounts/bluesky")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_linked"
        msg = await gw.svc.js.get_last_msg("EVENTS", subjects.identity_unlinked(user))
        assert isinstance(parse(msg.data, (IdentityUnlinked,)), IdentityUnlinked)


async def test_pds_address_must_be_public_https(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as c:
        for pds in (
            "http://127.0.0.1:2583",
            "https://10.0.0.1",
            "ftp://x.example",
            "https://localhost",
        ):
            r = await c.post(
                "/api/accounts/bluesky",
                json={"identifier": "a.test", "app_password": "x", "pds_url": pds},
            )
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_instance", pds


async def test_link_and_unlink_mastodon_with_oauth(settings, mastodon: dict[str, Any]) -> None:
    async for gw in serve(gateway_settings(settings, mastodon_allow_local=True)):
        async with gw.browser(signed_in=True) as c:
            user = (await c.get("/api/session")).json()["user_id"]
            r = await c.post("/api/accounts/mastodon", json={"instance": mastodon["domain"]})
            assert r.status_code == 200, r.text
            url = r.json()["authorize_url"]
            assert "/oauth/authorize?" in url and "code_challenge=" in url
            assert gw.url + "/oauth/mastodon/callback" in urllib.parse.unquote(url)
            cb = browser_authorize(mastodon["http"], url, "bob")
            r = await c.get("/oauth/mastodon/callback", params=cb)
            assert r.status_code == 303 and r.headers["location"] == "/?linked=mastodon"
            ident = (await c.get("/api/me")).json()["identities"]
            assert [(i["network"], i["account"]) for i in ident] == [
                ("mastodon", f"bob@{mastodon['domain']}")
            ]
            msg = await gw.svc.js.get_last_msg("EVENTS", subjects.identity_linked(user))
            linked = parse(msg.data, (IdentityLinked,))
            assert (
                isinstance(linked, IdentityLinked) and linked.account == f"bob@{mastodon['domain']}"
            )
            # A replayed callback is refused (the state is single-use).
            r = await c.get("/oauth/mastodon/callback", params=cb)
            assert r.headers["location"] == "/?error=oauth_state_invalid"
            assert (await c.delete("/api/accounts/mastodon")).status_code == 204
            assert (await c.get("/api/me")).json()["identities"] == []
