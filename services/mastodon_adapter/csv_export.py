"""The Mastodon "following list" CSV of a user's remaining matches, for the import page.

Exactly what Mastodon exports and imports (`app/models/export.rb`, `to_following_accounts_csv`):
header `Account address,Show boosts,Notify on new posts,Languages`, one `user@domain,true,false,`
row per account, `\n` line ends. Settings > Import and export > Import > "Following list".
"""

from __future__ import annotations

import csv
import io

import asyncpg

from hqx import ledger
from hqx.subjects import Network

HEADER = ("Account address", "Show boosts", "Notify on new posts", "Languages")


def render(accounts: list[str]) -> str:
    """Pure: the CSV text for these `user@domain` accounts (deduplicated, sorted)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for acct in sorted({a.strip().lstrip("@").lower() for a in accounts if "@" in a}):
        w.writerow((acct, "true", "false", ""))
    return buf.getvalue()


async def following_csv(pool: asyncpg.Pool, user_id: str) -> str:
    """Every Mastodon target still planned for this user (beyond the caps, or on request)."""
    remaining = await ledger.pending(pool, user_id, Network.MASTODON)
    return render([t.account for t in remaining])
