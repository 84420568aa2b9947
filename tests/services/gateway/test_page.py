"""The page: localized, self-hosted assets, security headers."""

from __future__ import annotations

import re

from tests.services.gateway.conftest import Gateway


async def test_page_is_localized_from_the_browser_and_switchable(gateway: Gateway) -> None:
    async with gateway.client() as c:
        fr = await c.get("/", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
        assert fr.status_code == 200 and '<html lang="fr">' in fr.text
        assert "Se connecter avec X" in fr.text
        en = await c.get("/", headers={"Accept-Language": "de,en;q=0.5"})
        assert '<html lang="en">' in en.text and "Sign in with X" in en.text
        r = await c.get("/lang/fr")
        assert r.status_code == 303
        again = await c.get("/", headers={"Accept-Language": "en"})
        assert '<html lang="fr">' in again.text  # the switch wins over the browser


async def test_security_headers_and_no_external_assets(gateway: Gateway) -> None:
    async with gateway.client() as c:
        r = await c.get("/")
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert not re.search(r'(src|href)="(https?:)?//', r.text)
        for asset in ("/static/app.js", "/static/zip.js", "/static/style.css"):
            a = await c.get(asset)
            assert a.status_code == 200 and a.headers["x-content-type-options"] == "nosniff"


async def test_csrf_token_is_required_on_changes(gateway: Gateway) -> None:
    async with gateway.client() as c:
        await c.get("/")
        r = await c.post("/api/session")
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
        r = await c.post("/api/session", headers={"X-CSRF-Token": "forged"})
        assert r.status_code == 403
        r = await c.post("/api/session", headers={"X-CSRF-Token": c.cookies["hqx_csrf"]})
        assert r.status_code == 201


async def test_openapi_is_served(gateway: Gateway) -> None:
    async with gateway.client() as c:
        spec = (await c.get("/openapi.json")).json()
        assert "/api/uploads" in spec["paths"] and "/api/me" in spec["paths"]
