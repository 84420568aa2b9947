"""The key-rotation step of the runbook against a real PostgreSQL: every ciphertext ends under
the newest key, concurrent-safe and idempotent, and the old key can then go."""

from __future__ import annotations

import importlib.util

import asyncpg

from hqx.crypto import TokenCipher
from tests.deploy.manifests import DEPLOY

_spec = importlib.util.spec_from_file_location("rotate", DEPLOY / "rotate_token_keys.py")
assert _spec and _spec.loader
rotate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rotate)


async def test_rotation_re_encrypts_tokens_and_client_secrets(fresh_database_url: str) -> None:
    old, new = TokenCipher.generate_key(), TokenCipher.generate_key()
    before = TokenCipher(old)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        for i in range(rotate.BATCH + 3):  # more than one batch
            await conn.execute("insert into users (id) values ($1)", f"u{i}")
            await conn.execute(
                "insert into identities (user_id, network, account, auth_kind, token_cipher) "
                "values ($1, 'bluesky', $2, 'oauth', $3)",
                f"u{i}",
                f"did:plc:{i}",
                before.encrypt(f"token-{i}"),
            )
        await conn.execute(
            "insert into identities (user_id, network, account, auth_kind) "
            "values ('u0', 'mastodon', 'a@b.example', 'oauth')"
        )
        await conn.execute(
            "insert into mastodon_apps (instance, client_id, secret_cipher) values ($1, 'c', $2)",
            "https://b.example",
            before.encrypt("client-secret"),
        )

        report = await rotate.rotate_all(fresh_database_url, f"{new},{old}")
        assert report == {
            "identities": {"rotated": rotate.BATCH + 3, "undecryptable": 0, "left": 0},
            "mastodon_apps": {"rotated": 1, "undecryptable": 0, "left": 0},
        }
        only_new = TokenCipher(new)
        rows = await conn.fetch(
            "select user_id, token_cipher from identities where token_cipher is not null"
        )
        plain = {r["user_id"]: only_new.decrypt(r["token_cipher"]).get_secret_value() for r in rows}
        assert plain == {f"u{i}": f"token-{i}" for i in range(rotate.BATCH + 3)}
        secret = await conn.fetchval("select secret_cipher from mastodon_apps")
        assert only_new.decrypt(secret).get_secret_value() == "client-secret"

        again = await rotate.rotate_all(fresh_database_url, f"{new},{old}")
        assert again["identities"]["left"] == 0
        # Without the old key, nothing is lost: rows are already under the new one.
        assert (await rotate.rotate_all(fresh_database_url, new))["identities"]["left"] == 0
        # A key missing from the list is reported, not silently skipped.
        lost = await rotate.rotate_all(fresh_database_url, TokenCipher.generate_key())
        assert lost["identities"]["undecryptable"] == rotate.BATCH + 3
        assert lost["identities"]["left"] == rotate.BATCH + 3
    finally:
        await conn.close()
