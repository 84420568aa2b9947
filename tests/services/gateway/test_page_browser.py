"""The page in real headless Chromium: X sign-in, slimmed upload, owner check, consent, erase."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from playwright.async_api import Browser, expect

from hqx import subjects
from hqx.messages import ArchiveUploaded, parse
from tests.eventually import eventually
from tests.peers.x_oauth import XProvider
from tests.services.gateway.browser import chromium, shot  # noqa: F401  (fixture)
from tests.services.gateway.conftest import Gateway
from tests.services.gateway.x_archive import write_archive

X_ID = "1500000000000000042"


async def test_journey_on_the_page(
    gateway: Gateway,
    x_provider: XProvider,
    chromium: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    x_provider.sign_in_as(X_ID, "walker")
    mine = write_archive(
        tmp_path / "mine.zip",
        X_ID,
        "walker",
        ["11", "12", "13"],
        ["21", "22"],
        top_folder="twitter-2026",
    )
    other = write_archive(tmp_path / "other.zip", "999", "someone", ["11"], [], padding_bytes=1000)
    page = await (await chromium.new_context(locale="fr-FR")).new_page()
    await page.goto(gateway.url + "/")
    await expect(page.locator("html")).to_have_attribute("lang", "fr")
    await page.get_by_role("link", name="English").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.screenshot(path=shot("page-01-welcome"), full_page=True)

    await page.get_by_role("link", name="Sign in with X").first.click()
    await expect(page.locator("#x-status")).to_have_text("X account verified: @walker")
    await page.screenshot(path=shot("page-02-signed-in"), full_page=True)

    # An archive of another X account is refused before anything is sent.
    await page.get_by_label("X archive (.zip)").set_input_files(str(other))
    await page.get_by_role("button", name="Send the archive").click()
    await expect(page.locator("#alert")).to_contain_text("another X account")

    await page.get_by_label("X archive (.zip)").set_input_files(str(mine))
    await page.get_by_role("button", name="Send the archive").click()
    await expect(page.locator("#upload-status")).to_have_text("Archive received.", timeout=20_000)
    await expect(page.locator("#stage")).to_have_attribute("data-stage", "received")
    await page.screenshot(path=shot("page-03-uploaded"), full_page=True)

    user = await gateway.svc.pool.fetchval(
        "select id from users where x_account_id = $1", int(X_ID)
    )
    msg = await gateway.svc.js.get_last_msg("ARCHIVES", subjects.archive_uploaded(user))
    ev = parse(msg.data, (ArchiveUploaded,))
    assert isinstance(ev, ArchiveUploaded) and ev.slimmed and ev.proven_x_account_id == X_ID
    assert ev.size < 20_000 < mine.stat().st_size  # the media never left the browser
    obj = await (await gateway.svc.archives()).get(ev.object_name)
    names = zipfile.ZipFile(io.BytesIO(obj.data)).namelist()
    assert sorted(names) == sorted(
        f"twitter-2026/data/{n}.js" for n in ("manifest", "account", "following", "follower")
    )
    assert zipfile.ZipFile(io.BytesIO(obj.data)).testzip() is None  # CRCs copied right

    await page.get_by_label("Automatic reconnection on Bluesky", exact=False).check()
    await page.get_by_role("button", name="Save my choices").click()
    await expect(page.locator("#consent-status")).to_have_text("Saved.")
    assert await gateway.svc.pool.fetchval(
        "select auto_reconnect from users where id = $1", user
    ) == ["bluesky"]

    await page.get_by_role("button", name="Erase everything").click()
    await page.get_by_label("Type ERASE to confirm").fill("erase")
    await page.get_by_role("button", name="Erase everything now").click()
    await expect(page.locator("#erased")).to_be_visible()
    await page.screenshot(path=shot("page-04-erased"), full_page=True)
    await eventually(
        lambda: gateway.svc.js.get_last_msg("EVENTS", subjects.user_erase(user)), timeout=10
    )


async def test_full_upload_resumes_after_a_broken_connection(
    gateway: Gateway,
    chromium: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    archive = write_archive(
        tmp_path / "full.zip", "77", "full", ["1"], ["2"], padding_bytes=10_000_000
    )
    page = await (await chromium.new_context(locale="en-US")).new_page()
    broken: list[str] = []

    async def break_once(route, request) -> None:
        # The second chunk's connection drops once: the page asks where to resume and goes on.
        if request.method == "PATCH" and request.headers.get("upload-offset") != "0" and not broken:
            broken.append(request.headers["upload-offset"])
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route("**/api/uploads/*", break_once)
    await page.goto(gateway.url + "/")
    await page.get_by_role("button", name="Continue without X").click()
    await page.get_by_label("Send only the files that matter", exact=False).uncheck()
    await page.get_by_label("X archive (.zip)").set_input_files(str(archive))
    await page.get_by_role("button", name="Send the archive").click()
    await expect(page.locator("#upload-status")).to_have_text("Archive received.", timeout=60_000)
    assert broken == [str(4 * 1024 * 1024)]
    row = await gateway.svc.pool.fetchrow(
        "select object_name, size, slimmed from uploads where size = $1"
        " order by created_at desc limit 1",
        archive.stat().st_size,
    )
    assert row["size"] == archive.stat().st_size and not row["slimmed"]
    obj = await (await gateway.svc.archives()).get(row["object_name"])  # digest verified
    assert obj.data == archive.read_bytes()


async def test_every_control_is_labelled_and_reachable_by_keyboard(
    gateway: Gateway,
    chromium: Browser,  # noqa: F811
) -> None:
    page = await (await chromium.new_context(locale="fr-FR")).new_page()
    await page.goto(gateway.url + "/")
    # Keyboard only: the skip link first, then the language switch, then the sign-in choices.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    for _ in range(6):
        if await page.evaluate("document.activeElement.id") == "anon-signin":
            break
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "anon-signin"
    await page.keyboard.press("Enter")
    await expect(page.locator("#personal")).to_be_visible()
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select, button')]
             .filter((e) => e.offsetParent !== null)
             .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                            && !e.textContent.trim())
             .map((e) => e.id || e.outerHTML)"""
    )
    assert unlabelled == []
    await page.screenshot(path=shot("page-05-fr-signed-in"), full_page=True)
