"""Every personal route needs a session, and one person's session never reaches another's data."""

from __future__ import annotations

import re

from hqx import db
from services.gateway.app import create
from services.gateway.settings import Settings
from tests.services.gateway.conftest import Gateway
from tests.services.gateway.test_uploads import CHUNK, small_zip

PUBLIC = {("GET", "/api/session"), ("POST", "/api/session"), ("DELETE", "/api/session")}


def personal_routes() -> list[tuple[str, str]]:
    """Every API operation of the OpenAPI spec, but the session routes themselves."""
    spec = create(Settings()).openapi()
    out = []
    for path, ops in spec["paths"].items():
        for method in ops:
            m = method.upper()
            if path.startswith("/api/") and (m, path) not in PUBLIC:
                out.append((m, path))
    return sorted(out)


ROUTES = personal_routes()


def test_the_personal_route_list_is_complete() -> None:
    paths = {p for _, p in ROUTES}
    assert {"/api/me", "/api/me/export", "/api/uploads/{upload_id}", "/api/me/consent"} <= paths
    assert "/api/me/progress/stream" in paths and "/api/accounts/{network}" in paths


async def test_every_personal_route_refuses_without_a_session(gateway: Gateway) -> None:
    async with gateway.browser() as c:
        for method, path in ROUTES:
            url = re.sub(r"\{network\}", "bluesky", re.sub(r"\{upload_id\}", "abc", path))
            r = await c.request(method, url, json={})
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["code"] == "not_authenticated"


async def test_another_session_cannot_read_resume_or_cancel_an_upload(gateway: Gateway) -> None:
    data = small_zip(1)
    async with gateway.browser(signed_in=True) as alice, gateway.browser(signed_in=True) as bob:
        up = (await alice.post("/api/uploads", json={"size": len(data)})).json()
        url = f"/api/uploads/{up['id']}"
        assert (await bob.get(url)).status_code == 404
        headers = {"Upload-Offset": "0", "Content-Type": CHUNK}
        r = await bob.patch(url, content=data, headers=headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert (await bob.delete(url)).status_code == 404
        mine = await alice.get(url)
        assert mine.status_code == 200 and mine.json()["state"] == "receiving"


async def test_export_and_erase_only_touch_the_session_user(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as alice, gateway.browser(signed_in=True) as bob:
        a = (await alice.get("/api/session")).json()["user_id"]
        b = (await bob.get("/api/session")).json()["user_id"]
        export = (await bob.get("/api/me/export")).text
        assert b in export and a not in export
        r = await bob.request("DELETE", "/api/me", json={"confirm": "ERASE"})
        assert r.status_code == 202
        assert (await bob.get("/api/me")).status_code == 401  # signed out everywhere
        assert (await alice.get("/api/me")).json()["user_id"] == a
    # No purger runs here: the tombstone is the gateway's, so the erase holds at once.
    assert await db.is_erased(gateway.svc.pool, b)
    assert not await db.is_erased(gateway.svc.pool, a)
    msgs = await gateway.svc.js.stream_info("EVENTS", subjects_filter="hqx.user.erase.*")
    assert set(msgs.state.subjects or {}) == {f"hqx.user.erase.{b}"}
