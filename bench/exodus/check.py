"""After a run: what should have happened (from the population) vs what the networks saw.

The ground truth is the simulators' own state (records on the PDS, follow calls on the
instances, refused requests), never the platform's ledger. A follow is *required* when its
owner uploaded a readable archive, linked that network and was never erased, and its target
is a HelloQuitteX user who linked the same network and was never erased (everyone opted in
to automatic reconnection, so late joiners are required too).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from bench.exodus.driver import Networks, Timeline
from bench.exodus.population import DAY_S, Population
from bench.exodus.sim_bluesky import Created
from bench.exodus.sim_mastodon import FollowCall
from hqx.ratelimit import DEFAULT_HEADROOM
from services.matcher.settings import Settings as MatcherSettings

ERASE_GRACE_S = 5.0  # wall seconds for an erase to reach every replica
PACE_RUN = 100  # consecutive follows of one account over which its speed is measured
LATENCY_CHECK = "p99 <= 1.1 x minimum (limit-bound users; floor, pace, limits)"


@dataclass(frozen=True)
class Budget:
    """A limit as we may use it (cap after head-room): `units` per `window_s` network seconds.

    `aligned`: fixed windows on the epoch (Mastodon); otherwise a window opens at the first
    spend after the last one closed (the PDS's rate-limiter-flexible). `requests`: a follow
    costs the requests it took (Mastodon's per-token budget), otherwise one unit.
    """

    units: int
    window_s: float
    aligned: bool
    requests: bool = False

    def min_time(self, n: int, start: float, factor: float) -> float:
        """Wall seconds before the n-th unit can be spent, starting fresh at wall `start`."""
        return schedule([self], [start] * n, factor)[-1] - start if n else 0.0


class _Windows:
    """One budget's count while `schedule` places follows one by one."""

    def __init__(self, budget: Budget, factor: float) -> None:
        self.b, self.w = budget, budget.window_s / factor
        self.opened, self.used = -math.inf, 0

    def _start(self, t: float) -> float:
        if self.b.aligned:
            return math.floor(t / self.w) * self.w
        return self.opened if t < self.opened + self.w else t

    def _cost(self, requests: int) -> int:
        return requests if self.b.requests else 1

    def fit(self, t: float, requests: int) -> float:
        """The earliest time >= t at which one more follow fits."""
        if self._start(t) != self.opened or self.used + self._cost(requests) <= self.b.units:
            return t
        # NOTE: past the boundary by a microsecond: floor(t / w) of a boundary can round down.
        return self.opened + self.w + (1e-6 if self.b.aligned else 0.0)

    def spend(self, t: float, requests: int) -> None:
        start = self._start(t)
        if start != self.opened:
            self.opened, self.used = start, 0
        self.used += self._cost(requests)


def schedule(
    budgets: Sequence[Budget],
    ready: Sequence[float],
    factor: float,
    requests: Sequence[int] | None = None,
    gap: float = 0.0,
) -> list[float]:
    """Wall time of each follow at the earliest: follow i no sooner than `ready[i]` (ascending)
    nor than `gap` after the one before, inside every budget's windows; follow i takes
    `requests[i]` requests (default 1). Greedy, hence optimal for follows of equal cost."""
    counts = [_Windows(b, factor) for b in budgets]
    out: list[float] = []
    t = -math.inf
    for i, r in enumerate(ready):
        cost = requests[i] if requests is not None else 1
        t = max(r, t + gap)
        while (nt := max(c.fit(t, cost) for c in counts)) > t:
            t = nt
        for c in counts:
            c.spend(t, cost)
        out.append(t)
    return out


def _cap(points: int, cost: int = 1) -> int:
    return math.floor(points * (1 - DEFAULT_HEADROOM)) // cost


BUDGETS = {
    "bluesky": (Budget(_cap(5000, 3), 3600, False), Budget(_cap(35000, 3), DAY_S, False)),
    # per token: 270 requests; a follow takes 2 (a resolve, then the follow) or 1 (the target's
    # id already resolved on that instance)
    "mastodon": (Budget(_cap(400), DAY_S, True), Budget(_cap(300), 300, True, requests=True)),
}


def limit_min(
    network: str, n: int, start: float, factor: float, requests: Sequence[int] | None = None
) -> float:
    """Wall seconds from `start` to the n-th of n follows ready at `start`, limits alone."""
    return earliest(network, n, start, factor, 0.0, requests)


def earliest(
    network: str,
    n: int,
    start: float,
    factor: float,
    floor: float,
    requests: Sequence[int] | None = None,
    pace: float = 0.0,
) -> float:
    """Wall seconds from `start` to the n-th follow at the earliest: the pipeline's own time to
    a first follow (`floor`), then one follow every `pace` wall seconds at most (the fastest any
    one account's follows went in the run), inside the limits. On Mastodon follow i takes
    `requests[i]` requests (default 2: a resolve and the follow).

    NOTE: the windows are compressed, the pipeline is not. At factor 24 a 5-minute window is
    12.5 s: the limits alone would let a person who starts 0.9 s before a boundary spend that
    whole window (270 requests) in those 0.9 s, 300 requests a wall second for one account,
    which no client does. `pace` is the one-account speed this pipeline showed it has; with it,
    `earliest` is what the limits allow a client as fast as our fastest moment, the target's
    baseline. Both floor and pace are measured in the same run.
    """
    if n <= 0:
        return 0.0
    ts = schedule(BUDGETS[network], [start + floor] * n, factor, requests or [2] * n, pace)
    return ts[-1] - start


def fastest_pace(made_at: Sequence[Sequence[float]], run: int) -> float:
    """Wall seconds a follow over the fastest `run` consecutive follows of one account (each
    sequence: one account's follow times): the pipeline's best one-account speed. 0.0 (no
    ceiling) when no account made that many."""
    best = math.inf
    for ts in made_at:
        s = sorted(ts)
        for i in range(len(s) - run + 1):
            best = min(best, (s[i + run - 1] - s[i]) / (run - 1))
    return 0.0 if best == math.inf else best


def at_own_speed(
    network: str, start: float, made_at: Sequence[float], requests: Sequence[int], factor: float
) -> tuple[float, float]:
    """(pace, earliest) of one person at the speed the run gave them: their own first follow,
    then their own fastest run of follows (`made_at`, ascending). Latency / earliest splits
    into that speed (own earliest / earliest: how soon the pipeline reached them and how fast
    it went for them, both slowed by the load of the moment) times what was lost at it
    (latency / own earliest: a window left unused, a wait between their batches)."""
    if not made_at:
        return 0.0, math.nan
    pace = fastest_pace([made_at], max(2, min(PACE_RUN, len(made_at))))
    to_first = made_at[0] - start
    return pace, earliest(network, len(requests), start, factor, to_first, requests, pace)


def limit_allowed(
    network: str, ready: Sequence[float], end: float, factor: float, spent: Sequence[float] = ()
) -> int:
    """How many follows the limits allow by `end`, each no sooner than its ready time (the
    owner's start, or a late joiner's link plus the matcher's settle): a window left unused
    cannot serve a later joiner. `spent`: follows of the account that count against its windows
    but are not asked for here (made to someone who erased themselves later). An upper bound:
    one request a follow."""
    ts = schedule(BUDGETS[network], sorted([*ready, *spent]), factor)
    return max(0, sum(1 for t in ts if t <= end) - len(spent))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


@dataclass
class Verdict:
    required: int = 0
    allowed: int = 0
    made_required: int = 0
    lost: list[tuple[str, str, str]] = field(default_factory=list)  # allowed, not made
    deferred: int = 0  # required, not made, beyond what the limits allowed by the end
    duplicates: int = 0
    # Mastodon follow calls for an existing follow, per owner: no harm, but they spend the
    # person's request budget (and our count of their daily follows)
    redundant_by_user: Counter[str] = field(default_factory=Counter)
    unexpected: int = 0
    erased_violations: int = 0
    # (owner, network, target, who was erased, wall s after the request) of the first ones
    erased_first: list[tuple[str, str, str, str, float]] = field(default_factory=list)
    violations: Counter[str] = field(default_factory=Counter)
    latency: list[float] = field(default_factory=list)  # wall s, per user x network
    minimum: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # latency / earliest
    # Late joiners (reverse matches): wall s from the friend linking to the follow made.
    reverse_latency: list[float] = field(default_factory=list)
    floor_s: float = 0.0  # median over networks of the floor below
    # network -> wall s from start to the first follow of its first arrivals the limits do not
    # delay: the pipeline's own unloaded latency
    floor: dict[str, float] = field(default_factory=dict)
    # network -> wall s a follow at the fastest PACE_RUN follows one account made (`fastest_pace`)
    pace: dict[str, float] = field(default_factory=dict)
    objects_left: int = 0
    objects_left_names: list[str] = field(default_factory=list)
    dlq: list[tuple[str, str, str]] = field(default_factory=list)
    dlq_total: int = 0
    dlq_unexpected: list[tuple[str, str, str]] = field(default_factory=list)
    hostile: int = 0
    by_network: dict[str, tuple[int, int]] = field(default_factory=dict)  # required, made
    # (ratio to earliest, user, network, forward follows, latency, minimum): the slowest
    slowest: list[tuple[float, str, str, int, float, float]] = field(default_factory=list)
    # (user, network, forward follows, wall s into the day, latency, limits' minimum, earliest):
    # every user the limits delay (minimum > 0), the population behind "p99 <= 1.1 x minimum".
    bound: list[tuple[str, str, int, float, float, float, float]] = field(default_factory=list)
    bound_requests: dict[str, float] = field(default_factory=dict)  # requests per follow
    # "<user> <network>" of each limit-bound row -> wall s from its start (upload and link
    # both done) to its graph ingested (0 when before), to its first forward follow, a follow
    # at its own fastest run of follows (own_pace_s), and its earliest at that first follow
    # and that pace (own_earliest_s)
    bound_stages: dict[str, dict[str, float]] = field(default_factory=dict)
    # (user, network, forward follows) the limits could not let finish by the run's end: left
    # out of the latency figures (a follow not made by then has no latency yet)
    unfinished: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def bound_ratios(self) -> list[float]:
        """Latency / earliest (floor, pace, limits) of each limit-bound user: the target."""
        return [lat / e for *_, lat, _m, e in self.bound]

    @property
    def limits_only_ratios(self) -> list[float]:
        """Latency / the limits' minimum alone, as if the pipeline took no time (compressed)."""
        return [lat / m for *_, lat, m, _e in self.bound]

    @property
    def redundant_calls(self) -> int:
        return sum(self.redundant_by_user.values())

    @property
    def made_over_allowed(self) -> float:
        return self.made_required / self.allowed if self.allowed else float("nan")

    def passed(self) -> dict[str, bool | None]:
        """Each target of issue 11; None when this run cannot tell (no limit-bound user)."""
        return {
            "made >= 0.95 x allowed": self.made_over_allowed >= 0.95,
            "0 violations": sum(self.violations.values()) == 0,
            "0 duplicates": self.duplicates == 0,
            "0 lost": not self.lost,
            "0 follows after erase": self.erased_violations == 0,
            "no raw archive left": self.objects_left == 0,
            "DLQ holds only hostile inputs": not self.dlq_unexpected,
            LATENCY_CHECK: (pct(self.bound_ratios, 0.99) <= 1.1 if self.bound_ratios else None),
        }


@dataclass(frozen=True)
class _Row:
    """One person on one network, for the latency target: wall s from `start` to their first
    and last forward follow, the limits' minimum, and each forward follow's requests."""

    start: float
    to_first: float
    latency: float
    minimum: float
    user: str
    network: str
    requests: list[int]
    finished: bool  # every forward follow made by the end of the run
    made_at: list[float]  # wall time of each forward follow made


@dataclass
class Seen:
    """What the simulated networks recorded, apart from their servers: `verify`'s input, which
    `--keep-data` also pickles next to the logs so the checks can be re-run on a past day."""

    created: list[Created]
    follow_calls: list[FollowCall]
    violations: list[str]  # "<network>:<limit>" of each refused request
    searches: Counter[str]  # Mastodon acct -> searches on its token
    accts: dict[str, str]  # user id -> Mastodon acct

    @classmethod
    def of(cls, nets: Networks, pop: Population) -> Seen:
        (created, bluesky_refused), (follow_calls, mastodon_refused, searches) = nets.recorded()
        return cls(
            created=created,
            follow_calls=follow_calls,
            violations=[f"bluesky:{x}" for x in bluesky_refused]
            + [f"mastodon:{x}" for x in mastodon_refused],
            searches=searches,
            accts={p.user_id: nets.acct(p) for p in pop.people if p.mastodon_instance is not None},
        )


def verify(
    pop: Population,
    tl: Timeline,
    seen: Seen,
    factor: float,
    leftovers: dict[str, object],
) -> Verdict:
    v = Verdict()
    people = {p.user_id: p for p in pop.people}
    erased = {p.user_id for p in pop.people if p.erase_at_s is not None}
    by_did = {p.did: p for p in pop.people if p.bluesky}
    by_acct = {seen.accts[p.user_id].lower(): p for p in pop.people if p.user_id in seen.accts}
    end = tl.drained_at or (tl.lag[-1]["t"] if tl.lag else tl.load_end)

    # What the networks saw: (owner, network, target) -> wall times of each creation.
    made: dict[tuple[str, str, str], list[float]] = {}
    # A Mastodon follow takes a resolve only where no one on the follower's instance followed
    # that account before: the least work any platform can do (ids are per instance).
    known: set[tuple[str, str]] = set()
    resolves: set[tuple[str, str]] = set()  # (follower, target) accts whose follow needed one
    for c in seen.created:
        who, whom = by_did.get(c.did), by_did.get(c.subject)
        key = (who.user_id if who else c.did, "bluesky", whom.user_id if whom else c.subject)
        made.setdefault(key, []).append(c.at)
    for f in sorted(seen.follow_calls, key=lambda f: f.at):
        follower, target = f.follower.lower(), f.target.lower()
        if (where := (follower.partition("@")[2], target)) not in known:
            known.add(where)
            resolves.add((follower, target))
        who, whom = by_acct.get(follower), by_acct.get(target)
        key = (who.user_id if who else f.follower, "mastodon", whom.user_id if whom else f.target)
        if f.new:
            made.setdefault(key, []).append(f.at)
        else:
            v.redundant_by_user[key[0]] += 1
    first = {key: min(ts) for key, ts in made.items()}  # when each follow was first made
    by_owner: dict[tuple[str, str], list[tuple[str, str, str]]] = {}  # (owner, net) -> made
    for key in made:
        by_owner.setdefault(key[:2], []).append(key)
    v.duplicates = sum(len(ts) - 1 for ts in made.values())
    v.violations.update(seen.violations)

    # A late joiner's follows are planned once the link is this old (the matcher coalesces them
    # per follower): the earliest a window can serve them, wall s. Read as the matchers read it
    # (they inherit this process's environment), so an override reaches both.
    settle = MatcherSettings().reverse_settle_s
    required: set[tuple[str, str, str]] = set()
    rows: list[_Row] = []
    for p in pop.people:
        if p.hostile:
            v.hostile += 1
            continue
        if p.user_id in erased or p.user_id not in tl.uploads:
            continue
        for net in p.networks():
            if (p.user_id, net) not in tl.links:
                continue
            start = max(tl.uploads[p.user_id][0], tl.links[(p.user_id, net)])
            targets = [
                t
                for t in pop.platform_followings(p.index)
                if net in t.networks() and t.user_id not in erased and (t.user_id, net) in tl.links
            ]
            forward_first, forward_last, n_forward, unmade = end, start, 0, 0
            owner_acct = seen.accts.get(p.user_id, "").lower()
            ready: list[float] = []
            forward_requests: list[tuple[float, int]] = []  # (when made, requests)
            for t in targets:
                key = (p.user_id, net, t.user_id)
                required.add(key)
                linked = tl.links[(t.user_id, net)]
                ready.append(start if linked < start else linked + settle)
                if linked < start:
                    n_forward += 1
                    # NOTE: a follow never made counts as made at the end of the run (censored).
                    at = first.get(key, end)
                    unmade += key not in first
                    forward_first, forward_last = min(forward_first, at), max(forward_last, at)
                    pair = (owner_acct, seen.accts.get(t.user_id, "").lower())
                    cheap = key in made and pair not in resolves
                    forward_requests.append((at, 1 if cheap or net != "mastodon" else 2))
                elif key in made:
                    v.reverse_latency.append(first[key] - linked)
            got = sum(1 for t in targets if (p.user_id, net, t.user_id) in made)
            mine = {(p.user_id, net, t.user_id) for t in targets}
            spent = [  # made to someone who erased themselves later: their windows' share
                first[k] for k in by_owner.get((p.user_id, net), ()) if k not in mine
            ]
            allowed = limit_allowed(net, ready, end, factor, spent)
            v.allowed += allowed
            # Not made: lost if the limits allowed more than was made by the end of the run,
            # otherwise still waiting for a limit window (planned; Mastodon's daily cap).
            missing = [(p.user_id, net, t.user_id) for t in targets]
            missing = [k for k in missing if k not in made]
            lost = missing[: max(0, allowed - got)]
            v.lost += lost
            v.deferred += len(missing) - len(lost)
            n_required, n_made = v.by_network.get(net, (0, 0))
            v.by_network[net] = (n_required + len(targets), n_made + got)
            if n_forward:
                ordered = sorted(forward_requests)
                reqs = [r for _, r in ordered]
                m = limit_min(net, n_forward, start, factor, reqs)
                to_first, lat = forward_first - start, forward_last - start
                made_at = [at for at, _ in ordered][: n_forward - unmade]
                rows.append(
                    _Row(start, to_first, lat, m, p.user_id, net, reqs, not unmade, made_at)
                )
    v.required = len(required)
    v.made_required = sum(1 for k in required if k in made)
    v.lost.sort()
    for key, ts in made.items():
        owner, _, target = key
        if key in required:
            continue
        for at in ts:
            for gone, side in ((owner, "owner"), (target, "target")):
                if gone in tl.erased and at > tl.erased[gone] + ERASE_GRACE_S:
                    v.erased_violations += 1
                    v.erased_first.append((owner, key[1], target, side, at - tl.erased[gone]))
                    break
        if owner not in erased and target not in erased:
            v.unexpected += len(ts)

    # Latency vs what the limits allow a client as fast as this pipeline: its own floor (time
    # to a first follow of the first arrivals on each network, whose follows the limits do not
    # delay), then its fastest one-account pace; all measured here.
    rows.sort(key=lambda r: r.start)
    for net in {r.network for r in rows}:
        mine_rows = [r for r in rows if r.network == net]
        early = [r.to_first for r in mine_rows[: max(5, len(mine_rows) // 10)] if r.minimum == 0]
        v.floor[net] = statistics.median(early) if early else min(r.to_first for r in mine_rows)
        accounts = [[first[k] for k in ks] for (_, n), ks in by_owner.items() if n == net]
        v.pace[net] = fastest_pace(accounts, PACE_RUN)
    v.floor_s = statistics.median(v.floor.values()) if v.floor else 0.0
    for r in rows:
        n, lat, m = len(r.requests), r.latency, r.minimum
        e = earliest(
            r.network, n, r.start, factor, v.floor[r.network], r.requests, v.pace[r.network]
        )
        if not r.finished and r.start + e > end:
            # Still waiting for a window the limits open after the run's end (Mastodon's daily
            # cap): its latency is unknown, not `end - start`, which would read as early.
            v.unfinished.append((r.user, r.network, n))
            continue
        v.latency.append(lat)
        v.minimum.append(m)
        v.ratios.append(lat / e if e > 0 else 1.0)
        v.slowest.append((v.ratios[-1], r.user, r.network, n, lat, m))
        if m > 0:
            v.bound.append((r.user, r.network, n, r.start - tl.t0, lat, m, e))
            v.bound_requests[r.user] = sum(r.requests) / n
            ingested = tl.ingested.get(r.user)
            own_pace, own = at_own_speed(r.network, r.start, r.made_at, r.requests, factor)
            v.bound_stages[f"{r.user} {r.network}"] = {
                "to_ingested_s": math.nan if ingested is None else max(0.0, ingested - r.start),
                "to_first_follow_s": r.to_first,
                "own_pace_s": own_pace,
                "own_earliest_s": own,
            }
    v.slowest = sorted(v.slowest, reverse=True)[:30]
    v.erased_first = sorted(v.erased_first, key=lambda e: e[-1])[:50]

    objects = cast(list[str], leftovers.get("objects") or [])
    v.objects_left = len(objects)
    v.objects_left_names = list(objects)
    dlq = cast(list[tuple[str, str, str]], leftovers.get("dlq") or [])
    v.dlq_total = len(dlq)
    v.dlq = list(dlq)
    v.dlq_unexpected = [d for d in dlq if not (d[0] in people and people[d[0]].hostile)]
    return v
