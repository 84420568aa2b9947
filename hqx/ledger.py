"""The follow ledger: one row per owner x network x target (planned -> done, skipped...).

Shared by the matcher (plans), the adapters (record outcomes) and the purger (counts). Every
function is idempotent, so a redelivered message never plans or records twice:

- `plan` inserts `planned` rows and never changes an existing row's state, so a target already
  done, skipped or cancelled-and-replanned is not planned a second time. A target listed in
  `network_follows` (the owner already follows it there) is recorded as done/already_following.
- `record` applies adapter outcomes to rows that still exist; it never creates a row (a deleted
  planned row means cancelled: consent withdrawn, target erased or unlinked) and never downgrades
  a final state (done, skipped).
- Adapters must act only on `still_planned(...)` targets: cancellation is a row deletion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal, TypeAlias

import asyncpg

from hqx.errors import Reason
from hqx.messages.follow import FollowResult, FollowState, FollowTarget
from hqx.subjects import Network

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
Origin = Literal["forward", "reverse"]

# States a later outcome may still change (done and skipped are final).
_OPEN_STATES = ("planned", "failed", "requested")


def _ids(targets: Sequence[FollowTarget]) -> tuple[list[int], list[str]]:
    return [int(t.x_account_id) for t in targets], [t.account for t in targets]


async def plan(
    conn: Conn,
    user_id: str,
    network: Network | str,
    targets: Sequence[FollowTarget],
    *,
    origin: Origin = "forward",
) -> int:
    """Insert `planned` rows for new targets of one owner; returns how many rows were created."""
    return await plan_pairs(conn, network, [user_id] * len(targets), targets, origin=origin)


async def plan_pairs(
    conn: Conn,
    network: Network | str,
    owners: Sequence[str],
    targets: Sequence[FollowTarget],
    *,
    origin: Origin = "forward",
) -> int:
    """Insert `planned` rows for (owner, target) pairs, zipped; returns how many were created.

    One statement for many owners (a late joiner followed by thousands of people). A forward
    plan takes over a row still planned and unsent as `reverse`: a consent catch-up or a friend
    joining may plan part of a person's own migration before their graph's event is handled,
    and it must not wait behind late joiners, nor be cancelled by a later opt-out.
    """
    if not targets:
        return 0
    assert len(owners) == len(targets)
    xs, accounts = _ids(targets)
    rows = await conn.fetch(
        """
        insert into follow_ledger (user_id, network, target_x_id, target, state, reason, origin)
        select t.owner, $1, t.x, t.account,
               case when nf.account is null then 'planned' else 'done' end,
               case when nf.account is null then null else $5 end,
               $6
          from unnest($2::text[], $3::bigint[], $4::text[]) as t(owner, x, account)
          left join network_follows nf
            on nf.user_id = t.owner and nf.network = $1 and nf.account = t.account
        on conflict (user_id, network, target_x_id) do update
               set origin = 'forward', updated_at = now()
             where $6 = 'forward' and follow_ledger.origin = 'reverse'
               and follow_ledger.state = 'planned' and follow_ledger.batch_id is null
        returning xmax = 0 as created
        """,
        str(Network(network)),
        list(owners),
        xs,
        accounts,
        Reason.ALREADY_FOLLOWING.value,
        origin,
    )
    return sum(1 for r in rows if r["created"])


async def record(
    conn: Conn,
    user_id: str,
    network: Network | str,
    results: Iterable[FollowResult],
) -> int:
    """Apply adapter outcomes; returns how many rows changed (0 on a redelivery)."""
    rs = list(results)
    if not rs:
        return 0
    status = await conn.execute(
        """
        update follow_ledger f
           set state = r.state, reason = r.reason, updated_at = now()
          from unnest($3::bigint[], $4::text[], $5::text[]) as r(x, state, reason)
         where f.user_id = $1 and f.network = $2 and f.target_x_id = r.x
           and f.state = any($6::text[])
           and (f.state, f.reason) is distinct from (r.state, r.reason)
        """,
        user_id,
        str(Network(network)),
        [int(r.x_account_id) for r in rs],
        [FollowState(r.state).value for r in rs],
        [r.reason for r in rs],
        list(_OPEN_STATES),
    )
    return int(status.rsplit(" ", 1)[-1])


async def still_planned(
    conn: Conn, user_id: str, network: Network | str, targets: Sequence[FollowTarget]
) -> list[FollowTarget]:
    """The targets of a batch that are still `planned` (the rest are done or cancelled) and
    whose person did not ask for erasure (`hqx_target_erased`, 0011: before the matcher cancels)."""
    if not targets:
        return []
    rows = await conn.fetch(
        """
        select f.target_x_id from follow_ledger f
         where f.user_id = $1 and f.network = $2 and f.target_x_id = any($3::bigint[])
           and f.state = 'planned' and not hqx_target_erased(f.target_x_id, f.network)
        """,
        user_id,
        str(Network(network)),
        _ids(targets)[0],
    )
    keep = {str(r["target_x_id"]) for r in rows}
    return [t for t in targets if t.x_account_id in keep]


async def may_follow(
    conn: Conn, user_id: str, user_hash: str, network: Network | str, target: FollowTarget
) -> Reason | None:
    """Right before one follow call: why it must not be made now (None: go ahead).

    The owner erased since the batch started (`user_hash`: `hqx.db.user_hash`), or the row no
    longer planned (the target erased or unlinked, consent withdrawn, done by a twin batch).
    """
    row = await conn.fetchrow(
        """
        select exists (select 1 from erased_users where user_hash = $1) as erased,
               exists (select 1 from follow_ledger f
                        where f.user_id = $2 and f.network = $3 and f.target_x_id = $4
                          and f.state = 'planned'
                          and not hqx_target_erased(f.target_x_id, f.network)) as planned
        """,
        user_hash,
        user_id,
        str(Network(network)),
        int(target.x_account_id),
    )
    if row["erased"]:
        return Reason.USER_ERASED
    return None if row["planned"] else Reason.NOT_PLANNED


async def pending(
    conn: Conn, user_id: str, network: Network | str, limit: int | None = None
) -> list[FollowTarget]:
    """Planned targets of one owner on one network, in target order."""
    rows = await conn.fetch(
        """
        select target_x_id, target from follow_ledger
         where user_id = $1 and network = $2 and state = 'planned'
         order by target_x_id limit $3
        """,
        user_id,
        str(Network(network)),
        limit,
    )
    return [FollowTarget(x_account_id=str(r["target_x_id"]), account=r["target"]) for r in rows]


async def counts(conn: Conn, user_id: str) -> dict[str, dict[str, int]]:
    """Rows per network and state for one owner: {"bluesky": {"planned": 3, "done": 5}, ...}."""
    rows = await conn.fetch(
        "select network, state, count(*) as n from follow_ledger where user_id = $1"
        " group by network, state",
        user_id,
    )
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["network"], {})[r["state"]] = int(r["n"])
    return out


async def note_network_follows(
    conn: Conn, user_id: str, network: Network | str, accounts: Iterable[str]
) -> int:
    """Remember accounts the owner already follows on a network (e.g. listed by an adapter).

    Planned rows for them become done/already_following; future plans skip them. Idempotent.
    """
    accs = sorted(set(accounts))
    if not accs:
        return 0
    net = str(Network(network))
    await conn.execute(
        "insert into network_follows (user_id, network, account)"
        " select $1, $2, a from unnest($3::text[]) a on conflict do nothing",
        user_id,
        net,
        accs,
    )
    status = await conn.execute(
        """
        update follow_ledger set state = 'done', reason = $4, updated_at = now()
         where user_id = $1 and network = $2 and target = any($3::text[]) and state = 'planned'
        """,
        user_id,
        net,
        accs,
        Reason.ALREADY_FOLLOWING.value,
    )
    return int(status.rsplit(" ", 1)[-1])


async def cancel_planned(
    conn: Conn, user_id: str, network: Network | str | None = None, origin: Origin | None = None
) -> int:
    """Delete an owner's still-planned rows (unlink, consent withdrawn, erase)."""
    status = await conn.execute(
        """
        delete from follow_ledger
         where user_id = $1 and state = 'planned'
           and ($2::text is null or network = $2) and ($3::text is null or origin = $3)
        """,
        user_id,
        str(Network(network)) if network else None,
        origin,
    )
    return int(status.rsplit(" ", 1)[-1])


async def resend_planned(
    conn: Conn, user_id: str, network: Network | str, sent_before: datetime
) -> int:
    """Mark an owner's rows sent before `sent_before` and still planned unsent again, as a new
    plan generation.

    For a re-link: batches that reached the adapter while the account could not act (paused,
    session revoked) were skipped and their rows kept; the newer `planned_at` gives the next
    batch a new msg id, so JetStream does not drop it as a duplicate of the skipped one.
    NOTE: only rows sent before the link (`sent_before`: when it happened). A batch sent since
    is in flight under this link: sent again, it ran twice at once (a link event handled after
    the person's graph, as on exodus day), and on Mastodon a twin's follow call costs budget.
    """
    status = await conn.execute(
        """
        update follow_ledger set batch_id = null, planned_at = now(), updated_at = now()
         where user_id = $1 and network = $2 and state = 'planned' and batch_id is not null
           and updated_at < $3
        """,
        user_id,
        str(Network(network)),
        sent_before,
    )
    return int(status.rsplit(" ", 1)[-1])


async def accounts_with_pending(conn: Conn, network: Network | str) -> int:
    """Active linked accounts of a network with at least one planned follow."""
    n = await conn.fetchval(
        "select count(*) from identities i where i.network = $1 and i.status = 'active'"
        " and exists (select 1 from follow_ledger l where l.user_id = i.user_id"
        " and l.network = $1 and l.state = 'planned')",
        str(network),
    )
    return int(n or 0)
