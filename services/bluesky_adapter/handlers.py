"""Handlers of the Bluesky adapter: one per consumed event, no broker imports."""

from __future__ import annotations

from hqx import db, ledger
from hqx.consumer import Delivery
from hqx.errors import Reason
from hqx.messages import FollowRequested
from hqx.outcomes import Done, Outcome, Skipped
from services.bluesky_adapter import identity
from services.bluesky_adapter.run import NETWORK, Deps, FollowRun


async def handle_follow_requested(
    message: FollowRequested, delivery: Delivery, deps: Deps
) -> Outcome:
    """Follow a batch of DIDs for one user, exactly once.

    Erased user, no linked account, paused account: skipped (ledger rows stay planned, so a
    re-link lets the matcher send them again). Only still-planned targets are acted on, so a
    redelivered batch does nothing twice. A redelivery lists the repo again instead of trusting
    the cached listing (the previous attempt may have died after the PDS committed).
    """
    if await db.is_erased(deps.pool, message.user_id):
        return Skipped(Reason.USER_ERASED)
    ident = await identity.load(deps.pool, message.user_id)
    if ident is None:
        return Skipped(Reason.NOT_LINKED)
    if not ident.active:
        return Skipped(Reason.ACCOUNT_PAUSED)
    todo = await ledger.still_planned(deps.pool, message.user_id, NETWORK, message.targets)
    if not todo:
        return Done("nothing planned")
    run = FollowRun(deps, ident, delivery.num_delivered, delivery.stream_sequence)
    try:
        return await run.execute(todo)
    finally:
        await run.close()
