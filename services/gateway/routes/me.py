"""The signed-in person: profile, consent, stats, export, share message, erase."""

from __future__ import annotations

import importlib
import json
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from hqx import erasure, subjects
from hqx.errors import Reason
from hqx.messages import ConsentChanged, UserEraseRequested
from hqx.subjects import Network
from services.gateway import accounts, events, progress, sessions, uploads
from services.gateway.deps import CurrentUser, SvcDep, T
from services.gateway.errors import ApiError
from services.gateway.object_writer import ObjectWriter
from services.gateway.personal_data import export_fallback, stats_fallback

router = APIRouter(prefix="/api/me", tags=["me"])
ERASE_WORD = "ERASE"


class IdentityOut(BaseModel):
    network: Network
    account: str
    handle: str | None = None
    status: str


class MeOut(BaseModel):
    user_id: str
    x_proven: bool
    x_username: str | None = None
    x_account_id: str | None = Field(None, description="the proven X id (decimal string)")
    auto_reconnect: dict[Network, bool]
    identities: list[IdentityOut]


class ConsentIn(BaseModel):
    auto_reconnect: dict[Network, bool] = Field(
        description="automatic reconnection of late joiners, per network (absent = unchanged)"
    )


class EraseIn(BaseModel):
    confirm: Literal["ERASE"] = Field(description='type "ERASE": the confirmation step')


async def _me(svc: SvcDep, user: str) -> MeOut:
    row = await accounts.get_user(svc.pool, user)
    if row is None:
        raise ApiError(Reason.NOT_AUTHENTICATED, "this account no longer exists", 401)
    idents = await svc.pool.fetch(
        "select network, account, handle, status from identities where user_id = $1 order by 1",
        user,
    )
    return MeOut(
        user_id=user,
        x_proven=row["x_proven"],
        x_username=row["x_username"],
        x_account_id=str(row["x_account_id"]) if row["x_proven"] else None,
        auto_reconnect={n: n.value in (row["auto_reconnect"] or []) for n in Network},
        identities=[IdentityOut(**dict(i)) for i in idents],
    )


@router.get("", response_model=MeOut)
async def get_me(user: CurrentUser, svc: SvcDep) -> MeOut:
    return await _me(svc, user)


@router.put("/consent", response_model=MeOut)
async def set_consent(body: ConsentIn, user: CurrentUser, svc: SvcDep) -> MeOut:
    on = [n.value for n, v in body.auto_reconnect.items() if v]
    off = [n.value for n, v in body.auto_reconnect.items() if not v]
    status = await svc.pool.execute(
        "update users set auto_reconnect = array(select distinct x from unnest("
        "array_cat(auto_reconnect, $2::text[])) x where not x = any($3::text[]) order by x)"
        " where id = $1",
        user,
        on,
        off,
    )
    if not status.endswith(" 1"):
        raise ApiError(Reason.NOT_AUTHENTICATED, "this account no longer exists", 401)
    await svc.publish(
        subjects.consent_changed(user),
        ConsentChanged(user_id=user, auto_reconnect=body.auto_reconnect),
    )
    events.consent_changed()
    return await _me(svc, user)


@router.get("/progress")
async def get_progress(user: CurrentUser, svc: SvcDep) -> dict[str, Any]:
    """The same document the live stream (`/api/me/progress/stream`) sends on every change."""
    return await progress.snapshot(svc.pool, user)


@router.get("/stats")
async def get_stats(user: CurrentUser, svc: SvcDep) -> dict[str, Any]:
    """How many of your followings and followers are already on each network."""
    try:
        mod = importlib.import_module("services.matcher.stats")
        rows = await mod.user_stats(svc.pool, user)
        return {"networks": {str(r.network): r.model_dump(mode="json") for r in rows}}
    except (ModuleNotFoundError, AttributeError):
        return await stats_fallback(svc.pool, user)


@router.get("/export")
async def export(user: CurrentUser, svc: SvcDep) -> Response:
    """Everything we hold about you, as one JSON download (never a token)."""
    try:
        mod = importlib.import_module("services.purger.export")
        data = _plain(await mod.export_user(svc.pool, svc.redis, svc.js, user))
    except (ModuleNotFoundError, AttributeError):
        data = await export_fallback(svc.pool, user)
    return Response(
        json.dumps(data, default=str, indent=1),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="helloquittex-export.json"'},
    )


@router.get("/mastodon.csv")
async def mastodon_csv(user: CurrentUser, svc: SvcDep) -> Response:
    """The Mastodon "following list" import file, for follows beyond Mastodon's caps."""
    try:
        mod = importlib.import_module("services.mastodon_adapter.csv_export")
    except ModuleNotFoundError as e:
        raise ApiError(Reason.NOT_FOUND, "no Mastodon import file is available yet", 404) from e
    text = await mod.following_csv(svc.pool, user)
    return Response(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="following_accounts.csv"'},
    )


@router.get("/share")
async def share(user: CurrentUser, svc: SvcDep, t: T) -> dict[str, str]:
    """A message to announce the move, naming the linked accounts."""
    rows = await svc.pool.fetch(
        "select network, coalesce(handle, account) h from identities where user_id = $1", user
    )
    names = " / ".join(f"{r['h']} ({t('network_' + r['network'])})" for r in rows) or "Bluesky"
    return {"message": t("share_message", accounts=names)}


@router.delete("", status_code=202)
async def erase_me(body: EraseIn, request: Request, user: CurrentUser, svc: SvcDep) -> Response:
    """Erase everything: `user.erase` makes every service delete this person's data.

    The tombstone is written here, before the request is published, so the erase takes effect
    at once (every service refuses this person's messages, the adapters stop before their next
    follow), however far behind the consumers of `user.erase` are on a busy day.
    """
    await erasure.tombstone(svc.pool, user)
    writer = ObjectWriter(await svc.archives())
    for row in await svc.pool.fetch(
        "select id, nuid, state from uploads where user_id = $1 and state = 'receiving'", user
    ):
        await uploads.cancel(svc.pool, writer, row)  # unsealed chunks: the purger cannot see them
    await svc.publish(
        subjects.user_erase(user), UserEraseRequested(user_id=user), msg_id=f"erase-{user}"
    )
    await sessions.close_all(svc.redis, user)
    events.erase_requested()
    response = Response(status_code=202)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


def _plain(value: Any) -> Any:
    """Whatever the other services return (dataclass, model, dict) as JSON-ready data."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return value
