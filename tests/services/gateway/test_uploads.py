"""Resumable uploads into the real object store: complete, resumed, refused with clear errors."""

from __future__ import annotations

import hashlib
import io
import itertools
import zipfile

import httpx

from hqx import subjects
from hqx.messages import ArchiveUploaded, parse
from services.gateway import uploads
from services.gateway.object_writer import ObjectWriter
from tests.services.gateway.conftest import Gateway

CHUNK = "application/offset+octet-stream"


def small_zip(n_files: int = 3, size: int = 200_000) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(n_files):
            body = hashlib.sha256(str(i).encode()).hexdigest() * (size // 64)
            z.writestr(f"data/file{i}.js", body)
    return buf.getvalue()


async def _create(c: httpx.AsyncClient, size: int) -> dict:
    r = await c.post("/api/uploads", json={"size": size, "slimmed": True})
    assert r.status_code == 201, r.text
    return r.json()


async def _patch(c: httpx.AsyncClient, upload_id: str, offset: int, data: bytes) -> httpx.Response:
    return await c.patch(
        f"/api/uploads/{upload_id}",
        content=data,
        headers={"Upload-Offset": str(offset), "Content-Type": CHUNK},
    )


async def test_upload_in_parts_lands_in_the_object_store_and_is_announced(gateway: Gateway) -> None:
    data = small_zip()
    async with gateway.browser(signed_in=True) as c:
        user = (await c.get("/api/session")).json()["user_id"]
        up = await _create(c, len(data))
        cuts = [0, 100_000, 333_333, len(data)]
        for a, b in itertools.pairwise(cuts):
            r = await _patch(c, up["id"], a, data[a:b])
            assert r.status_code == 200, r.text
            assert int(r.headers["Upload-Offset"]) == b
        assert r.json()["state"] == "received"
    store = await gateway.svc.archives()
    obj = await store.get(f"{user}/{up['id']}")  # verifies the SHA-256 digest we wrote
    assert obj.data == data
    msg = await gateway.svc.js.get_last_msg("ARCHIVES", subjects.archive_uploaded(user))
    ev = parse(msg.data, (ArchiveUploaded,))
    assert isinstance(ev, ArchiveUploaded)
    assert ev.object_name == f"{user}/{up['id']}" and ev.size == len(data) and ev.slimmed
    assert ev.sha256 == hashlib.sha256(data).hexdigest() and ev.proven_x_account_id is None


async def test_resume_after_a_lost_connection_and_a_process_restart(gateway: Gateway) -> None:
    data = small_zip(4)
    async with gateway.browser(signed_in=True) as c:
        user = (await c.get("/api/session")).json()["user_id"]
        up = await _create(c, len(data))
        assert (await _patch(c, up["id"], 0, data[:300_000])).status_code == 200
        # The process forgets its in-memory state (another replica, or a restart)...
        uploads._live.clear()
        st = (await c.get(f"/api/uploads/{up['id']}")).json()
        assert st["offset"] == 300_000 and st["state"] == "receiving"
        # ...a stale offset is refused with where to resume...
        r = await _patch(c, up["id"], 100, data[100:])
        assert r.status_code == 409 and r.json()["error"]["code"] == "upload_invalid"
        assert "300000" in r.json()["error"]["message"]
        uploads._live.clear()
        r = await _patch(c, up["id"], 300_000, data[300_000:])
        assert r.status_code == 200 and r.json()["state"] == "received"
    obj = await (await gateway.svc.archives()).get(f"{user}/{up['id']}")
    assert obj.data == data


async def test_oversized_uploads_are_refused(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as c:
        r = await c.post("/api/uploads", json={"size": gateway.settings.upload_max_bytes + 1})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        data = small_zip(1)
        up = await _create(c, len(data) - 10)
        r = await _patch(c, up["id"], 0, data)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert (await c.get(f"/api/uploads/{up['id']}")).json()["state"] == "failed"


async def test_wrong_type_is_refused(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as c:
        html = b"<html>" + b"x" * 5000
        up = await _create(c, len(html))
        r = await _patch(c, up["id"], 0, html)
        assert r.status_code == 415 and r.json()["error"]["code"] == "not_a_zip"
        up = await _create(c, 100)
        r = await c.patch(
            f"/api/uploads/{up['id']}",
            content=b"PK",
            headers={"Upload-Offset": "0", "Content-Type": "text/plain"},
        )
        assert r.status_code == 415 and r.json()["error"]["code"] == "upload_invalid"


async def test_truncated_zip_is_refused(gateway: Gateway) -> None:
    data = small_zip(2)[:-40]
    async with gateway.browser(signed_in=True) as c:
        up = await _create(c, len(data))
        r = await _patch(c, up["id"], 0, data)
        assert r.status_code == 422 and r.json()["error"]["code"] == "truncated"
        assert "truncated" in r.json()["error"]["message"]


async def test_a_partial_upload_stays_resumable(gateway: Gateway) -> None:
    data = small_zip(1)
    async with gateway.browser(signed_in=True) as c:
        up = await _create(c, len(data))
        r = await _patch(c, up["id"], 0, data[:1000])
        assert r.status_code == 200 and r.json() == {
            "id": up["id"],
            "offset": 1000,
            "size": len(data),
            "state": "receiving",
            "reason": None,
        }


async def test_too_many_uploads_at_once(gateway: Gateway) -> None:
    async with gateway.browser(signed_in=True) as c:
        for _ in range(gateway.settings.user_max_active_uploads):
            await _create(c, 1000)
        r = await c.post("/api/uploads", json={"size": 1000})
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_requests"


def test_end_record_detection() -> None:
    z = small_zip(1, 1000)
    assert uploads.has_end_record(z[-70_000:])
    assert not uploads.has_end_record(z[:-1])
    commented = io.BytesIO()
    with zipfile.ZipFile(commented, "w") as f:
        f.writestr("a", "b")
        f.comment = b"PK\x05\x06 tricky comment"
    assert uploads.has_end_record(commented.getvalue())


async def test_erase_discards_an_unfinished_upload(gateway: Gateway) -> None:
    data = small_zip(2)
    async with gateway.browser(signed_in=True) as c:
        up = await _create(c, len(data))
        assert (await _patch(c, up["id"], 0, data[:300_000])).status_code == 200
        nuid = await gateway.svc.pool.fetchval("select nuid from uploads where id = $1", up["id"])
        store = await gateway.svc.archives()
        subject = ObjectWriter(store)._chunks(nuid)

        async def chunks() -> int:
            info = await gateway.svc.js.stream_info(store._stream, subjects_filter=subject)
            return (info.state.subjects or {}).get(subject, 0)

        assert await chunks() == 3
        assert (await c.request("DELETE", "/api/me", json={"confirm": "ERASE"})).status_code == 202
        assert await chunks() == 0


async def test_full_storage_answers_503_and_the_upload_stays_resumable(
    settings,
    x_provider,
) -> None:
    from tests.services.gateway.conftest import gateway_settings, serve

    data = small_zip(8)  # ~1.6 MB, more than the bucket below holds
    tiny = gateway_settings(settings, x_provider, HQX_JETSTREAM_MAX_BYTES=2 * 1024**2)
    async for gw in serve(tiny):
        async with gw.browser(signed_in=True) as c:
            up = await _create(c, len(data))
            r = await _patch(c, up["id"], 0, data)
            assert r.status_code == 503 and r.json()["error"]["code"] == "network_unavailable"
            st = (await c.get(f"/api/uploads/{up['id']}")).json()
            assert st["state"] == "receiving" and 0 < st["offset"] < len(data)
            assert st["offset"] % (128 * 1024) == 0  # exactly what the store holds


async def test_an_upload_begun_on_one_replica_finishes_on_another(
    settings,
    x_provider,
    gateway: Gateway,
) -> None:
    from tests.services.gateway.conftest import gateway_settings, serve

    data = small_zip(3)
    async for other in serve(gateway_settings(settings, x_provider)):
        async with gateway.browser(signed_in=True) as c, other.client() as c2:
            c2.cookies = c.cookies
            c2.headers["X-CSRF-Token"] = c.headers["X-CSRF-Token"]
            user = (await c.get("/api/session")).json()["user_id"]
            up = await _create(c, len(data))
            assert (await _patch(c, up["id"], 0, data[:250_000])).status_code == 200
            uploads._live.clear()  # replicas are separate processes: nothing shared in memory
            assert (await c2.get(f"/api/uploads/{up['id']}")).json()["offset"] == 250_000
            r = await _patch(c2, up["id"], 250_000, data[250_000:])
            assert r.status_code == 200 and r.json()["state"] == "received"
    obj = await (await gateway.svc.archives()).get(f"{user}/{up['id']}")
    assert obj.data == data
