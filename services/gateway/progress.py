"""A person's migration progress, read from PostgreSQL: what the page and the SSE stream show.

Stages: none -> receiving -> received -> unpacked (graph stored) -> following -> done, or
rejected (with the ingest reason), or nomatch (linked, but nobody to follow there yet).
Per network: done / requested / pending / skipped (by reason) / failed, and why pending follows
wait.
"""

from __future__ import annotations

import math
from typing import Any

import asyncpg

from hqx.subjects import Network

# Published limits (ARCHITECTURE §6), used only to tell the person how long the wait is.
HOURLY_PACE = {Network.BLUESKY: 1600, Network.MASTODON: 400 / 24}


def wait_estimate(network: Network, pending: int) -> dict[str, Any] | None:
    """Why pending follows wait, and about how long: {"reason", "per_hour", "minutes_left"}."""
    if pending <= 0:
        return None
    pace = HOURLY_PACE[network]
    return {
        "reason": "rate_limit",
        "per_hour": round(pace, 1),
        "minutes_left": max(1, math.ceil(pending / pace * 60)),
    }


async def snapshot(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        user = await conn.fetchrow("select x_proven from users where id = $1", user_id)
        if user is None:
            return {"stage": "erased"}
        upload = await conn.fetchrow(
            'select id, state, reason, "offset", size, slimmed from uploads where user_id = $1'
            " order by created_at desc limit 1",
            user_id,
        )
        graph = await conn.fetchrow(
            "select following_count, follower_count, version, ingested_at from graphs"
            " where user_id = $1",
            user_id,
        )
        ledger = await conn.fetch(
            "select network, state, reason, count(*) n from follow_ledger where user_id = $1"
            " group by 1, 2, 3",
            user_id,
        )
        identities = await conn.fetch(
            "select network, account, handle, status, status_reason from identities"
            " where user_id = $1",
            user_id,
        )
    networks = _networks(ledger, identities)
    return {
        "stage": _stage(upload, graph, networks),
        "upload": dict(upload) if upload else None,
        "graph": _graph(graph),
        "networks": networks,
    }


def _graph(graph: asyncpg.Record | None) -> dict[str, Any] | None:
    if graph is None:
        return None
    return {
        "following_count": graph["following_count"],
        "follower_count": graph["follower_count"],
        "version": graph["version"],
    }


def _networks(ledger: list[asyncpg.Record], identities: list[asyncpg.Record]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for net in Network:
        out[net.value] = {
            "linked": False,
            "status": None,
            "done": 0,
            "requested": 0,
            "pending": 0,
            "skipped": 0,
            "failed": 0,
            "skipped_reasons": {},
            "wait": None,
        }
    for ident in identities:
        n = out[ident["network"]]
        n.update(linked=True, status=ident["status"], handle=ident["handle"] or ident["account"])
        if ident["status"] != "active":
            n["paused_reason"] = ident["status_reason"]
    for row in ledger:
        n = out.get(row["network"])
        if n is None:
            continue
        key = "pending" if row["state"] == "planned" else row["state"]
        n[key] = n.get(key, 0) + row["n"]
        if row["state"] == "skipped" and row["reason"]:
            n["skipped_reasons"][row["reason"]] = row["n"]
    for net in Network:
        n = out[net.value]
        n["wait"] = wait_estimate(net, n["pending"])
        if n["pending"] and n["status"] not in (None, "active"):
            n["wait"] = {"reason": n.get("paused_reason") or "account_paused"}
    return out


def _stage(
    upload: asyncpg.Record | None, graph: asyncpg.Record | None, networks: dict[str, Any]
) -> str:
    if upload is not None and upload["state"] in ("rejected", "failed") and graph is None:
        return "rejected"
    planned = sum(n["pending"] for n in networks.values())
    finished = sum(
        n["done"] + n["requested"] + n["skipped"] + n["failed"] for n in networks.values()
    )
    if planned:
        return "following"
    if finished:
        return "done"
    if graph is not None:
        linked = any(n["linked"] for n in networks.values())
        return "nomatch" if linked else "unpacked"
    if upload is None:
        return "none"
    return str(upload["state"])
