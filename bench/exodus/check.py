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

ERASE_GRACE_S = 5.0  # wall seconds for an erase to reach every replica


@dataclass(frozen=True)
class Budget:
    """A limit as we may use it (cap after head-room): `units` per `window_s` network seconds.

    `aligned`: fixed windows on the epoch (Mastodon); otherwise a window opens at the first
    spend after the last one closed (the PDS's rate-limiter-flexible).
    """

    units: int
    window_s: float
    aligned: bool

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

    def fit(self, t: float) -> float:
        """The earliest time >= t at which one more unit fits."""
        if self._start(t) != self.opened or self.used < self.b.units:
            return t
        # NOTE: past the boundary by a microsecond: floor(t / w) of a boundary can round down.
        return self.opened + self.w + (1e-6 if self.b.aligned else 0.0)

    def spend(self, t: float) -> None:
        start = self._start(t)
        if start != self.opened:
            self.opened, self.used = start, 0
        self.used += 1


def schedule(
    budgets: Sequence[Budget], ready: Sequence[float], factor: float, per_unit: float = 0.0
) -> list[float]:
    """Wall time of each unit at the earliest: unit i no sooner than `ready[i]` (ascending), one
    after another `per_unit` apart, inside every budget's windows (greedy, hence optimal for
    identical units)."""
    counts = [_Windows(b, factor) for b in budgets]
    out: list[float] = []
    t = -math.inf
    for r in ready:
        t = max(r, t + per_unit)
        while (nt := max(c.fit(t) for c in counts)) > t:
            t = nt
        for c in counts:
            c.spend(t)
        out.append(t)
    return out


def _cap(points: int, cost: int = 1) -> int:
    return math.floor(points * (1 - DEFAULT_HEADROOM)) // cost


BUDGETS = {
    "bluesky": (Budget(_cap(5000, 3), 3600, False), Budget(_cap(35000, 3), DAY_S, False)),
    # a follow is one resolve and one follow request on the person's token
    "mastodon": (Budget(_cap(400), DAY_S, True), Budget(_cap(300, 2), 300, True)),
}


def budgets(network: str, requests: float = 2.0) -> tuple[Budget, ...]:
    """The network's budgets in follows; on Mastodon a follow costs `requests` on the token
    (2: a resolve and the follow; 1: the target's id already known on that instance)."""
    if network != "mastodon":
        return BUDGETS[network]
    day, token = BUDGETS[network]
    return day, Budget(math.floor(_cap(300) / max(1.0, requests)), token.window_s, True)


def limit_min(network: str, n: int, start: float, factor: float, requests: float = 2.0) -> float:
    """Wall seconds from `start` to the n-th of n follows ready at `start`, limits alone."""
    return earliest(network, n, start, factor, floor=0.0, requests=requests)


def earliest(
    network: str,
    n: int,
    start: float,
    factor: float,
    floor: float,
    per_follow: float = 0.0,
    requests: float = 2.0,
) -> float:
    """Wall seconds from `start` to the n-th follow at the earliest for this pipeline: its own
    unloaded time to the first follow (`floor`) and between follows of one account
    (`per_follow`), both measured in the run, inside what the limits allow.

    NOTE: the windows are compressed, the pipeline is not. At factor 24 a 5-minute window lasts
    12.5 s, in which an adapter at 60 ms a follow makes only ~200: the limits' 135 are no longer
    free. Uncompressed, seconds of pipeline are noise against 5 min..24 h windows, so this is
    the minimum the limits allow this pipeline; `limit_min` (both 0) is reported beside it.
    """
    if n <= 0:
        return 0.0
    ts = schedule(budgets(network, requests), [start + floor] * n, factor, per_follow)
    return ts[-1] - start


def limit_allowed(network: str, ready: Sequence[float], end: float, factor: float) -> int:
    """How many follows the limits allow by `end`, each no sooner than its ready time (the
    owner's start, or a late joiner's link): a window left unused cannot serve a later joiner.
    An upper bound: every Mastodon follow at one request (its target's id known)."""
    return sum(1 for t in schedule(budgets(network, 1.0), sorted(ready), factor) if t <= end)


def unloaded_pace(rows: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """(floor, per follow) in wall s from (follows, latency) of users no limit delayed: the
    median pairwise slope (Theil-Sen, robust to a few slow users), then the median intercept."""
    if not rows:
        return 0.0, 0.0
    slopes = [
        (l2 - l1) / (n2 - n1)
        for i, (n1, l1) in enumerate(rows)
        for n2, l2 in rows[i + 1 :]
        if n2 != n1
    ]
    per = max(0.0, statistics.median(slopes)) if slopes else 0.0
    return max(0.0, statistics.median(lat - per * n for n, lat in rows)), per


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
    redundant_calls: int = 0  # Mastodon follow calls for an existing follow: no harm, but
    # they spend the person's request budget (and our count of their daily follows)
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
    floor_s: float = 0.0  # median over networks of the fitted floor below
    # network -> (floor, per follow) in wall s: the pipeline's unloaded pace (`unloaded_pace`)
    pace: dict[str, tuple[float, float]] = field(default_factory=dict)
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
    bound_requests: dict[str, float] = field(default_factory=dict)  # Mastodon requests/follow

    @property
    def bound_ratios(self) -> list[float]:
        """Latency / earliest (the limits at the pipeline's unloaded pace) of each limit-bound
        user: the target."""
        return [lat / e for *_, lat, _m, e in self.bound]

    @property
    def limits_only_ratios(self) -> list[float]:
        """Latency / the limits' minimum alone, as if the pipeline took no time (compressed)."""
        return [lat / m for *_, lat, m, _e in self.bound]

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
            "p99 <= 1.1 x minimum (limit-bound users, limits at the unloaded pace)": (
                pct(self.bound_ratios, 0.99) <= 1.1 if self.bound_ratios else None
            ),
        }


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
        return cls(
            created=list(nets.bluesky.created),
            follow_calls=list(nets.mastodon.follow_calls),
            violations=[f"bluesky:{x.limit}" for x in nets.bluesky.violations]
            + [f"mastodon:{x.limit}" for x in nets.mastodon.violations],
            searches=Counter(nets.mastodon.searches),
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
    redundant: Counter[str] = Counter()  # follow calls for a follow that already existed
    calls = Counter(f.follower.lower() for f in seen.follow_calls)
    searches = Counter({a.lower(): n for a, n in seen.searches.items()})

    def requests(user_id: str, net: str) -> float:
        """Token requests per follow this person's follows took (the resolves the platform had
        to make: a target resolved before on the same instance costs none)."""
        a = seen.accts.get(user_id, "").lower()
        if net != "mastodon" or not calls[a]:
            return 2.0
        return min(2.0, 1.0 + searches[a] / calls[a])

    for c in seen.created:
        who, whom = by_did.get(c.did), by_did.get(c.subject)
        key = (who.user_id if who else c.did, "bluesky", whom.user_id if whom else c.subject)
        made.setdefault(key, []).append(c.at)
    for f in seen.follow_calls:
        who, whom = by_acct.get(f.follower.lower()), by_acct.get(f.target.lower())
        key = (who.user_id if who else f.follower, "mastodon", whom.user_id if whom else f.target)
        if f.new:
            made.setdefault(key, []).append(f.at)
        else:
            v.redundant_calls += 1
            redundant[key[0]] += 1
    v.duplicates = sum(len(ts) - 1 for ts in made.values())
    v.violations.update(seen.violations)

    required: set[tuple[str, str, str]] = set()
    rows: list[tuple[float, float, float, str, str, int]] = []  # start, latency, min, who
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
            forward_last, n_forward = start, 0
            ready: list[float] = []
            for t in targets:
                key = (p.user_id, net, t.user_id)
                required.add(key)
                linked = tl.links[(t.user_id, net)]
                ready.append(max(start, linked))
                if linked < start:
                    n_forward += 1
                    # NOTE: a follow never made counts as made at the end of the run (censored).
                    forward_last = max(forward_last, min(made[key]) if key in made else end)
                elif key in made:
                    v.reverse_latency.append(min(made[key]) - linked)
            got = sum(1 for t in targets if (p.user_id, net, t.user_id) in made)
            allowed = limit_allowed(net, ready, end, factor)
            v.allowed += allowed
            # Not made: lost if the limits allowed more than was made by the end of the run,
            # otherwise still waiting for a limit window (planned; Mastodon's daily cap).
            missing = [(p.user_id, net, t.user_id) for t in targets]
            missing = [k for k in missing if k not in made]
            lost = missing[: max(0, allowed - got)]
            v.lost += lost
            v.deferred += len(missing) - len(lost)
            v.redundant_by_user[p.user_id] += redundant.get(p.user_id, 0)
            n_required, n_made = v.by_network.get(net, (0, 0))
            v.by_network[net] = (n_required + len(targets), n_made + got)
            if n_forward:
                m = limit_min(net, n_forward, start, factor, requests(p.user_id, net))
                rows.append((start, forward_last - start, m, p.user_id, net, n_forward))
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

    # Latency vs what the limits allow this pipeline: its own unloaded pace (time to the first
    # follow, time per follow of one account), fitted per network on the first arrivals, whose
    # follows the limits do not delay; both measured here.
    rows.sort()
    for net in {r[4] for r in rows}:
        mine = [r for r in rows if r[4] == net]
        early = [(r[5], r[1]) for r in mine[: max(5, len(mine) // 10)] if r[2] == 0]
        v.pace[net] = unloaded_pace(early)
    v.floor_s = statistics.median(f for f, _ in v.pace.values()) if v.pace else 0.0
    for began, lat, m, user, net, n in rows:
        floor, per = v.pace[net]
        e = earliest(net, n, began, factor, floor, per, requests(user, net))
        v.latency.append(lat)
        v.minimum.append(m)
        v.ratios.append(lat / e if e > 0 else 1.0)
        v.slowest.append((v.ratios[-1], user, net, n, lat, m))
        if m > 0:
            v.bound.append((user, net, n, began - tl.t0, lat, m, e))
            v.bound_requests[user] = requests(user, net)
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
