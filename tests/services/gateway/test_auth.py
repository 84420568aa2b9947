"""Sessions, anonymous accounts and X sign-in against the local X OAuth provider."""

from __future__ import annotations

from hqx import subjects
from hqx.messages import IdentityProven, parse
from tests.peers.x_oauth import XProvider
from tests.services.gateway.conftest import Gateway


async def test_anonymous_account_gets_a_session(gateway: Gateway) -> None:
    async with gateway.browser() as c:
        assert (await c.get("/api/session")).json()["authenticated"] is False
        r = await c.post("/api/session")
        assert r.status_code == 201
        user = r.json()["user_id"]
        assert subjects.USER_ID_RE.fullmatch(user)
        me = await c.get("/api/me")
        assert me.json()["user_id"] == user and me.json()["x_proven"] is False
        row = await gateway.svc.pool.fetchrow("select x_proven from users where id = $1", user)
        assert row is not None and row["x_proven"] is False
        assert (await c.delete("/api/session")).status_code == 204
        assert (await c.get("/api/me")).status_code == 401


async def _sign_in_with_x(gateway: Gateway, c) -> None:
    r = await c.get("/auth/x/start")
    assert r.status_code == 303
    # The browser goes to X, which approves and sends it back with code and state.
    async with gateway.client() as x:
        back = await x.get(r.headers["location"])
    assert back.status_code in (302, 307), back.text
    r = await c.get(back.headers["location"])
    assert r.status_code == 303 and r.headers["location"] == "/", r.headers.get("location")


async def test_x_sign_in_proves_the_x_id_and_publishes_it(
    gateway: Gateway, x_provider: XProvider
) -> None:
    x_provider.sign_in_as("1600000000000000001", "mover")
    async with gateway.browser(signed_in=True) as c:
        user = (await c.get("/api/session")).json()["user_id"]
        before = c.cookies["hqx_session"]
        await _sign_in_with_x(gateway, c)
        assert c.cookies["hqx_session"] != before  # a new session token after sign-in
        me = (await c.get("/api/me")).json()
        assert me["user_id"] == user and me["x_proven"] and me["x_username"] == "mover"
        row = await gateway.svc.pool.fetchrow(
            "select x_account_id, x_proven from users where id = $1", user
        )
        assert row["x_account_id"] == 1600000000000000001 and row["x_proven"]
    msg = await gateway.svc.js.get_last_msg("EVENTS", subjects.identity_proven(user))
    proven = parse(msg.data, (IdentityProven,))
    assert isinstance(proven, IdentityProven) and proven.x_account_id == "1600000000000000001"


async def test_second_x_sign_in_returns_to_the_same_account(
    gateway: Gateway, x_provider: XProvider
) -> None:
    x_provider.sign_in_as("1600000000000000002", "again")
    async with gateway.browser() as first:
        await _sign_in_with_x(gateway, first)
        user = (await first.get("/api/session")).json()["user_id"]
    async with gateway.browser() as second:
        await _sign_in_with_x(gateway, second)
        assert (await second.get("/api/session")).json()["user_id"] == user


async def test_x_callback_refuses_a_replayed_or_foreign_state(gateway: Gateway) -> None:
    async with gateway.browser() as c:
        r = await c.get("/auth/x/start")
        async with gateway.client() as x:
            back = (await x.get(r.headers["location"])).headers["location"]
    # Another browser (other CSRF cookie) cannot complete this sign-in.
    async with gateway.browser() as other:
        r = await other.get(back)
        assert r.headers["location"] == "/?error=oauth_state_invalid"
        # and the state is single-use.
        r = await other.get(back)
        assert r.headers["location"] == "/?error=oauth_state_invalid"
        assert (await other.get("/api/session")).json()["authenticated"] is False


async def test_x_denied_is_reported(gateway: Gateway, x_provider: XProvider) -> None:
    x_provider.denied = True
    async with gateway.browser() as c:
        r = await c.get("/auth/x/start")
        async with gateway.client() as x:
            back = (await x.get(r.headers["location"])).headers["location"]
        r = await c.get(back)
        assert r.headers["location"] == "/?error=user_denied"
