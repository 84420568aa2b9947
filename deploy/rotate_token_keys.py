"""Re-encrypt every token and client secret at rest under the newest key of `HQX_TOKEN_KEYS`.

Step 3 of the key-rotation runbook (deploy/README.md): once every pod runs with
`HQX_TOKEN_KEYS=<new>,<old>`, run this inside a pod (it has the settings and the database):

    kubectl -n hqx exec -i deploy/purger -- python - < deploy/rotate_token_keys.py

Idempotent and safe while the services run: each row is updated only if its ciphertext is still
the one read (a concurrent writer wins, and already encrypts with the newest key). Prints counts,
never a token. When it reports `left: 0`, the old key can be removed from the Secret.
"""

from __future__ import annotations

import asyncio
import json
import sys

import asyncpg
from cryptography.fernet import InvalidToken

from hqx.crypto import TokenCipher
from hqx.settings import ServiceSettings

# (table, key columns, ciphertext column): every column holding TokenCipher output.
ENCRYPTED = (
    ("identities", ("user_id", "network"), "token_cipher"),
    ("mastodon_apps", ("instance",), "secret_cipher"),
)
BATCH = 500


async def rotate_table(
    conn: asyncpg.Connection, cipher: TokenCipher, table: str, keys: tuple[str, ...], column: str
) -> dict[str, int]:
    """Re-encrypt one table's column in batches ordered by its key; returns counts."""
    done = failed = 0
    last: tuple = ()
    key_list = ", ".join(keys)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(keys)))
    while True:
        cond = f"{column} is not null" + (f" and ({key_list}) > ({placeholders})" if last else "")
        rows = await conn.fetch(
            f"select {key_list}, {column} from {table} where {cond} "  # noqa: S608 - ENCRYPTED
            f"order by {key_list} limit {BATCH}",
            *last,
        )
        if not rows:
            return {"rotated": done, "undecryptable": failed}
        for row in rows:
            old = bytes(row[column])
            try:
                new = cipher.rotate(old)
            except InvalidToken:  # counted: a key is missing from HQX_TOKEN_KEYS
                failed += 1
                continue
            where = " and ".join(f"{k} = ${i + 3}" for i, k in enumerate(keys))
            status = await conn.execute(
                f"update {table} set {column} = $1 where {column} = $2 and {where}",  # noqa: S608
                new,
                old,
                *(row[k] for k in keys),
            )
            done += status.endswith(" 1")
        last = tuple(rows[-1][k] for k in keys)


async def rotate_all(database_url: str, keys: str) -> dict[str, dict[str, int]]:
    cipher = TokenCipher(keys)
    newest = TokenCipher(keys.split(",")[0])
    conn = await asyncpg.connect(database_url)
    try:
        report = {}
        for table, key_cols, column in ENCRYPTED:
            counts = await rotate_table(conn, cipher, table, key_cols, column)
            left = 0
            for row in await conn.fetch(
                f"select {column} from {table} where {column} is not null"  # noqa: S608
            ):
                try:
                    newest.decrypt(bytes(row[column]))
                except ValueError:
                    left += 1
            report[table] = {**counts, "left": left}
        return report
    finally:
        await conn.close()


def main() -> int:
    settings = ServiceSettings()
    report = asyncio.run(rotate_all(settings.database_url, settings.token_keys.get_secret_value()))
    print(json.dumps(report, indent=2))
    return 0 if all(t["left"] == 0 for t in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
