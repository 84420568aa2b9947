"""The whole journey in real headless Chromium on the embedded stack, every service running.

Three friends already moved (X sign-in + Bluesky link through the API). A person signs in with X,
uploads a synthetic archive (slimmed in the browser) following them and two strangers, links
their Bluesky account on the local PDS, watches progress reach done, finds the follows on the
PDS, erases everything, and nothing of them is left in any store. Screenshots per step.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from hqx import db
from hqx.service import Service
from hqx.settings import ServiceSettings
from services.bluesky_adapter.app import create as bluesky_adapter
from services.bluesky_adapter.settings import Settings as BlueskySettings
from services.ingest.app import create as ingest
from services.ingest.settings import Settings as IngestSettings
from services.matcher.app import create as matcher
from services.matcher.settings import Settings as MatcherSettings
from services.purger.app import create as purger
from services.purger.settings import Settings as PurgerSettings
from tests.eventually import eventually
from tests.factories.archives import ArchiveSpec, write_archive
from tests.peers.x_oauth import XProvider, x_provider  # noqa: F401  (fixture)
from tests.scan import scan
from tests.services.bluesky_adapter.conftest import repo_follows
from tests.services.gateway.browser import chromium, shot  # noqa: F401  (fixture)
from tests.services.gateway.conftest import Gateway, gateway_settings, serve

PERSON_X = "1700000000000000001"
FRIENDS_X = ["1700000000000000011", "1700000000000000012", "1700000000000000013"]
STRANGERS_X = [1700000000000000091, 1700000000000000092]


@pytest.fixture
async def stack(
    settings: ServiceSettings,
    x_provider: XProvider,  # noqa: F811
) -> AsyncIterator[tuple[Gateway, list[Service]]]:
    base = settings.model_dump()
    services = [
        ingest(IngestSettings(**base)),
        matcher(MatcherSettings(**base)),
        bluesky_adapter(BlueskySettings(**base)),
        purger(PurgerSettings(**base, erase_settle_s=2.0)),
    ]
    for s in services:
        await s.start()
    try:
        async for gw in serve(gateway_settings(settings, x_provider, bluesky_allow_local=True)):
            yield gw, services
    finally:
        for s in services:
            await s.stop()


async def _friend_moves(gw: Gateway, x: XProvider, x_id: str, pds: dict, account: dict) -> str:
    """A friend signs in with X and links Bluesky through the API; returns their DID."""
    x.sign_in_as(x_id, f"friend{x_id[-2:]}")
    async with gw.browser() as c:
        r = await c.get("/auth/x/start")
        async with gw.client() as xc:
            back = (await xc.get(r.headers["location"])).headers["location"]
        assert (await c.get(back)).headers["location"] == "/"
        r = await c.post(
            "/api/accounts/bluesky",
            json={
                "identifier": account["handle"],
                "app_password": account.get("appPassword") or account["password"],
                "pds_url": pds["pdsUrl"],
            },
        )
        assert r.status_code == 201, r.text
        return r.json()["account"]


async def test_the_whole_journey(
    stack: tuple[Gateway, list[Service]],
    x_provider: XProvider,  # noqa: F811
    chromium: Browser,  # noqa: F811
    bsky_pds: dict[str, Any],
    bsky_accounts: Callable[[], dict[str, Any]],
    tmp_path: Path,
) -> None:
    gw, _ = stack
    friend_dids = [
        await _friend_moves(gw, x_provider, x_id, bsky_pds, bsky_accounts()) for x_id in FRIENDS_X
    ]
    me = bsky_accounts()
    archive = tmp_path / "twitter-archive.zip"
    with archive.open("wb") as f:
        following = [int(x) for x in FRIENDS_X] + STRANGERS_X
        random.Random(1).shuffle(following)
        write_archive(
            ArchiveSpec(owner_id=PERSON_X, username="walker", following=following,
                        follower=[int(FRIENDS_X[0])], nested="twitter-2026-11-25", macosx=True),
            f,
        )  # fmt: skip

    x_provider.sign_in_as(PERSON_X, "walker")
    page = await (await chromium.new_context(locale="en-GB")).new_page()
    await page.goto(gw.url + "/")
    await page.screenshot(path=shot("journey-01-welcome"), full_page=True)
    await page.get_by_role("link", name="Sign in with X").first.click()
    await expect(page.locator("#x-status")).to_have_text("X account verified: @walker")
    await page.screenshot(path=shot("journey-02-signed-in"), full_page=True)
    user = await gw.svc.pool.fetchval("select id from users where x_account_id = $1", int(PERSON_X))

    await page.get_by_label("X archive (.zip)").set_input_files(str(archive))
    await page.get_by_role("button", name="Send the archive").click()
    await expect(page.locator("#upload-status")).to_have_text("Archive received.", timeout=30_000)
    await expect(page.locator("#stage")).to_have_attribute("data-stage", "unpacked", timeout=30_000)
    await expect(page.locator("#stage")).to_contain_text("5 followings and 1 followers")
    await page.screenshot(path=shot("journey-03-archive-read"), full_page=True)

    await page.get_by_label("Bluesky handle or e-mail").fill(me["handle"])
    await page.get_by_label("App password").fill(me.get("appPassword") or me["password"])
    await page.get_by_label("Server (leave empty for bsky.social)").fill(bsky_pds["pdsUrl"])
    await page.get_by_role("button", name="Link", exact=True).click()
    await expect(page.locator("#bsky-linked")).to_contain_text(me["handle"])
    await page.screenshot(path=shot("journey-04-linked"), full_page=True)

    await expect(page.locator("#stage")).to_have_attribute("data-stage", "done", timeout=60_000)
    await expect(page.locator("#networks li[data-network=bluesky]")).to_have_attribute(
        "data-done", "3"
    )
    await page.screenshot(path=shot("journey-05-done"), full_page=True)
    did = await gw.svc.pool.fetchval(
        "select account from identities where user_id = $1 and network = 'bluesky'", user
    )
    follows = {subject for subject, _ in await repo_follows(bsky_pds, did)}
    assert set(friend_dids) <= follows

    await page.get_by_role("button", name="Erase everything").click()
    await page.get_by_label("Type ERASE to confirm").fill("ERASE")
    await page.get_by_role("button", name="Erase everything now").click()
    await expect(page.locator("#erased")).to_be_visible()
    await page.screenshot(path=shot("journey-06-erased"), full_page=True)

    await eventually(lambda: db.is_erased(gw.svc.pool, user), timeout=30)

    async def nothing_left() -> list[str]:
        return await scan(gw.svc.pool, gw.svc.redis, gw.svc.js, user) == []

    await eventually(nothing_left, timeout=60, interval=0.5)
    await page.goto(gw.url + "/")
    await expect(page.locator("#signed-out")).to_be_visible()
