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


async def test_request_limits_per_ip_answer_429_with_retry_after(settings, x_provider) -> None:
    from tests.services.gateway.conftest import gateway_settings, serve

    async for gw in serve(gateway_settings(settings, x_provider, rate_per_ip=5, rate_window_s=60)):
        async with gw.client() as c:
            codes = [(await c.get("/api/session")).status_code for _ in range(7)]
            assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
            r = await c.get("/api/session")
            assert r.json()["error"]["code"] == "too_many_requests"
            assert 1 <= int(r.headers["retry-after"]) <= 61
            assert (await c.get("/")).status_code == 200  # the page itself is not an API call


async def test_request_limits_per_user(settings, x_provider) -> None:
    from tests.services.gateway.conftest import gateway_settings, serve

    async for gw in serve(gateway_settings(settings, x_provider, rate_per_user=3)):
        async with gw.browser(signed_in=True) as c, gw.browser(signed_in=True) as other:
            codes = [(await c.get("/api/me")).status_code for _ in range(4)]
            assert codes[-1] == 429 and (await other.get("/api/me")).status_code == 200


async def test_requests_are_counted_by_route_template(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as c:
        await c.get("/api/uploads/some-upload-id")
        async with gateway.client() as h:
            h.base_url = f"http://127.0.0.1:{gateway.svc.health_port}"
            text = (await h.get("/metrics")).text
    assert (
        'hqx_http_requests_total{method="GET",route="/api/uploads/{upload_id}",status="404"}'
        in text
    )
    assert "some-upload-id" not in text
