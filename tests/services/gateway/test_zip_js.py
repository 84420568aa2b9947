"""The browser zip slimmer (static/zip.js) in real Chromium, on every archive shape X produces."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.factories.archives import ArchiveSpec, build_archive
from tests.services.gateway.browser import chromium  # noqa: F401  (fixture)

ZIP_JS = Path(__file__).resolve().parents[3] / "services" / "gateway" / "static" / "zip.js"
KEEP = re.compile(r"^(?:[^/]+/)?data/(manifest|account|follower[^/]*|following[^/]*)\.js$")

SHAPES = {
    "plain": ArchiveSpec(following=list(range(1, 300)), follower=list(range(500, 600))),
    "nested_macosx": ArchiveSpec(
        following=[1, 2], follower=[3], nested="twitter-2024", macosx=True
    ),
    "multipart": ArchiveSpec(following=list(range(1, 2000)), follower=list(range(1, 900)), parts=3),
    "zip64": ArchiveSpec(following=[1, 2, 3], follower=[4], zip64=True),
    "streamed": ArchiveSpec(following=[1, 2, 3], follower=[4, 5], streamed=True),
    "stored": ArchiveSpec(following=[9, 8], follower=[7], compression=zipfile.ZIP_STORED),
    "no_manifest": ArchiveSpec(following=[1], follower=[2], manifest=False),
}

SLIM = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const file = new File([bytes], "archive.zip");
  const r = await HqxZip.slim(file);
  const out = new Uint8Array(await r.blob.arrayBuffer());
  let s = "";
  for (let i = 0; i < out.length; i += 0x8000) {
    s += String.fromCharCode(...out.subarray(i, i + 0x8000));
  }
  const acct = r.entries.find((e) => /account\\.js$/.test(e.name));
  return {zip: btoa(s), account: acct ? await HqxZip.text(file, acct) : null};
}"""


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_slimmed_zip_keeps_exactly_the_graph_files(chromium: Browser, shape: str) -> None:  # noqa: F811
    original = build_archive(SHAPES[shape])
    page = await chromium.new_page()
    await page.set_content("<!doctype html><title>zip</title>")
    await page.add_script_tag(path=str(ZIP_JS))
    result = await page.evaluate(SLIM, base64.b64encode(original).decode())
    slim = zipfile.ZipFile(io.BytesIO(base64.b64decode(result["zip"])))
    full = zipfile.ZipFile(io.BytesIO(original))
    wanted = [n for n in full.namelist() if KEEP.match(n) and not n.startswith("__MACOSX/")]
    assert slim.namelist() == wanted and wanted
    assert slim.testzip() is None  # CRCs and sizes copied right
    for name in wanted:
        assert slim.read(name) == full.read(name)
    account = next((n for n in wanted if n.endswith("data/account.js")), None)
    if account:
        assert result["account"] == full.read(account).decode("utf-8-sig")
    await page.close()


async def test_a_file_that_is_not_a_zip_is_refused(chromium: Browser) -> None:  # noqa: F811
    page = await chromium.new_page()
    await page.set_content("<!doctype html><title>zip</title>")
    await page.add_script_tag(path=str(ZIP_JS))
    code = await page.evaluate(
        """async () => { try { await HqxZip.slim(new File([new Uint8Array(5000)], "x.zip")); }
                         catch (e) { return e.code; } return "accepted"; }"""
    )
    assert code == "not_a_zip"
