"""Right of access: the export holds everything the scan finds, and never a token."""

from __future__ import annotations

import json
import uuid

import pytest

from hqx import subjects
from hqx.messages import UserEraseRequested
from hqx.service import Service
from services.purger.export import SECRET_MARK, export_user, main
from services.purger.settings import Settings
from tests.eventually import eventually
from tests.services.purger import world


def user() -> str:
    return f"u{uuid.uuid4().hex[:16]}"


async def test_export_holds_every_kind_of_data_and_no_token(purger: Service) -> None:
    me, other = user(), user()
    for u in (me, other):
        await world.seed_everything(purger.pool, purger.redis, purger.js, u)
    data = await export_user(purger.pool, purger.redis, purger.js, me)
    text = json.dumps(data)
    assert other not in text
    assert f"tok-{me}" not in text  # the token plaintext
    assert data["user"]["id"] == me and data["user"]["x_proven"] is True
    assert isinstance(data["user"]["x_account_id"], str)  # 19 digits: never a float
    assert data["graph"]["counts"] == {"following": 3, "followers": 2}
    assert {i["network"] for i in data["identities"]} == {"bluesky", "mastodon"}
    assert {i["token_cipher"] for i in data["identities"]} == {SECRET_MARK}
    assert len(data["directory"]) == 2
    assert {r["state"] for r in data["follow_ledger"]} == {"done", "planned"}
    assert data["other_tables"]["directory_quarantine"][0]["reason"] == "owner_mismatch"
    assert data["consents"]["auto_reconnect"] == []
    assert {k["key"] for k in data["redis_keys"]} == {
        f"hqx:progress:{me}",
        f"hqx:bluesky:follows:did:plc:{me}",
    }
    assert subjects.graph_ingested(me) in data["bus"]["messages"]
    assert [o["name"] for o in data["bus"]["archives"]] == [f"{me}/archive.zip"]
    assert data["erased"] is False


async def test_export_after_erase_says_erased_and_shows_the_audit(purger: Service) -> None:
    me = user()
    await world.seed_everything(purger.pool, purger.redis, purger.js, me)
    await purger.publish(subjects.user_erase(me), UserEraseRequested(user_id=me))

    async def erased_and_empty() -> dict | None:
        d = await export_user(purger.pool, purger.redis, purger.js, me)
        return d if d["erased"] and not d["bus"]["messages"] else None

    data = await eventually(erased_and_empty, timeout=30, interval=0.2)
    assert data["user"] is None and data["identities"] == [] and data["graph"]["following"] == []
    assert {a["kind"] for a in data["audit"]} >= {"graph_edges", "users"}


async def test_cli_main_prints_json(
    purger: Service,
    purger_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    me = user()
    await world.seed_postgres(purger.pool, me)
    for env, value in (
        ("NATS_URL", purger_settings.nats_url),
        ("REDIS_URL", purger_settings.redis_url),
        ("DATABASE_URL", purger_settings.database_url),
    ):
        monkeypatch.setenv(env, value)
    import asyncio

    code = await asyncio.to_thread(main, [me])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out)["user"]["id"] == me
    assert await asyncio.to_thread(main, ["no/such user"]) == 2
