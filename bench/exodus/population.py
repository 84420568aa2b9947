"""The synthetic exodus-day population: who arrives when, whom they follow, where they go.

Everything derives from one seed, so a run can be replayed and the expected follows recomputed
after the fact. Times are network seconds on a compressed day (0..DAY_S); the orchestra maps
them to wall-clock with the time-compression factor.

Shape (defaults; `quick` scales the sizes down, not the shares):
- followings per person: log-normal, median ~300, capped at `max_followings` materialized;
  a share of them (`platform_share`) are other HelloQuitteX users, picked by a Zipf popularity,
  so a few people are followed by most of the population (and get "millions" of declared
  followers: only `max_followers` are materialized in their archive);
- 30 % link Bluesky, 20 % Mastodon across 50 instances (independently: some link both);
- arrivals over the day with an afternoon burst; `late_share` arrive after the day (late
  joiners, reached by reverse match); `reupload_share` upload the same archive again;
  `erase_share` erase themselves after uploading; `hostile_share` upload a hostile archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tests.factories.archives import graph_lines

DAY_S = 86_400.0
HOSTILE_KINDS = ("not_a_zip", "truncated", "path_traversal", "zip_bomb", "malformed_js")
_B32 = "abcdefghijklmnopqrstuvwxyz234567"


@dataclass(frozen=True)
class Shape:
    users: int = 20_000
    seed: int = 20250120
    median_followings: float = 300.0
    sigma_followings: float = 1.1
    max_followings: int = 20_000
    max_followers: int = 5_000
    platform_share: float = 0.35  # share of a person's followings who are HelloQuitteX users
    zipf_a: float = 1.1
    bluesky_share: float = 0.30
    mastodon_share: float = 0.20
    mastodon_instances: int = 50
    late_share: float = 0.10
    reupload_share: float = 0.05
    erase_share: float = 0.03
    hostile_share: float = 0.01
    celebrities: int = 5  # declared followers in the millions

    @classmethod
    def quick(cls, users: int = 500, **kw: object) -> Shape:
        return cls(users=users, max_followings=2_000, max_followers=500, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Person:
    index: int
    user_id: str
    x_id: int
    username: str
    arrival_s: float  # network seconds since the start of the day (late joiners: > DAY_S)
    link_delay_s: float  # network seconds from upload to linking accounts
    bluesky: bool
    mastodon_instance: int | None  # 0..instances-1
    followers_declared: int
    reupload_at_s: float | None = None
    erase_at_s: float | None = None
    hostile: str | None = None  # one of HOSTILE_KINDS

    @property
    def late(self) -> bool:
        return self.arrival_s > DAY_S

    @property
    def did(self) -> str:
        h = hashlib.sha256(f"did|{self.user_id}".encode()).digest()
        return "did:plc:" + "".join(_B32[b % 32] for b in h[:24])

    @property
    def handle(self) -> str:
        return f"{self.username}.bsky.test"

    def networks(self) -> tuple[str, ...]:
        out = ("bluesky",) if self.bluesky else ()
        return out + (("mastodon",) if self.mastodon_instance is not None else ())


@dataclass
class Population:
    shape: Shape
    people: list[Person]
    _followings: list[np.ndarray] = field(repr=False)
    _followers: list[np.ndarray] = field(repr=False)

    def followings(self, i: int) -> np.ndarray:
        """X ids this person follows (platform users' ids and outsiders'), sorted, unique."""
        return self._followings[i]

    def followers(self, i: int) -> np.ndarray:
        """Materialized followers (platform users who follow them, padded with outsiders)."""
        return self._followers[i]

    @cached_property
    def by_x_id(self) -> dict[int, Person]:
        return {p.x_id: p for p in self.people}

    def platform_followings(self, i: int) -> list[Person]:
        by = self.by_x_id
        return [by[int(x)] for x in self._followings[i] if int(x) in by]

    def archive(self, i: int) -> bytes:
        p = self.people[i]
        if p.hostile:
            return hostile_archive(p, self._followings[i])
        return x_archive(p, self._followings[i], self._followers[i])

    def edges(self) -> int:
        return sum(len(f) for f in self._followings) + sum(len(f) for f in self._followers)


def build(shape: Shape) -> Population:
    rng = np.random.default_rng(shape.seed)
    n = shape.users
    # X ids: 19-digit snowflakes for most, a few short legacy ids (beyond 2^53 matters).
    x_ids = rng.integers(10**17, 9 * 10**18, size=n, dtype=np.int64)
    x_ids[: max(1, n // 50)] = rng.integers(10**5, 10**9, size=max(1, n // 50))
    x_ids = np.unique(x_ids)
    while len(x_ids) < n:  # pragma: no cover - collisions are astronomically rare
        x_ids = np.unique(np.concatenate([x_ids, rng.integers(10**17, 9 * 10**18, size=8)]))
    x_ids = rng.permutation(x_ids[:n])

    # Popularity: a Zipf rank per person; the top ranks are the celebrities.
    rank = rng.permutation(n) + 1
    weight = 1.0 / rank.astype(float) ** shape.zipf_a
    log_w = np.log(weight)

    nfollow = np.minimum(
        np.maximum(1, rng.lognormal(np.log(shape.median_followings), shape.sigma_followings, n)),
        shape.max_followings,
    ).astype(int)
    outsiders_base = 10**12  # outsiders' ids live in their own range, never a platform id
    followings: list[np.ndarray] = []
    incoming: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        k_plat = min(round(float(nfollow[i]) * shape.platform_share), n - 1)
        keys = log_w + rng.gumbel(size=n)  # Gumbel top-k: weighted sample without replacement
        keys[i] = -np.inf
        picked = np.argpartition(-keys, k_plat)[:k_plat] if k_plat else np.array([], int)
        for j in picked:
            incoming[int(j)].append(int(x_ids[i]))
        outs = outsiders_base + rng.choice(10**11, size=nfollow[i] - k_plat, replace=False)
        followings.append(np.unique(np.concatenate([x_ids[picked], outs]).astype(np.int64)))

    declared = np.maximum(1, rng.lognormal(np.log(300), 1.6, n)).astype(int)
    celeb = np.argsort(rank)[: shape.celebrities]
    declared[celeb] = rng.integers(1_000_000, 20_000_000, size=len(celeb))
    followers: list[np.ndarray] = []
    for i in range(n):
        own = np.array(incoming[i], dtype=np.int64)
        want = max(len(own), min(int(declared[i]), shape.max_followers))
        pad = outsiders_base * 2 + rng.choice(10**11, size=max(0, want - len(own)), replace=False)
        followers.append(np.unique(np.concatenate([own, pad]).astype(np.int64)))

    # Arrivals: a morning trickle and an afternoon burst (beta), late joiners after the day.
    arrival = rng.beta(4.0, 2.5, n) * DAY_S
    late = rng.random(n) < shape.late_share
    arrival[late] = DAY_S + rng.random(late.sum()) * DAY_S * 0.25
    link_delay = rng.exponential(600.0, n)  # ~10 network minutes to link after uploading
    bluesky = rng.random(n) < shape.bluesky_share
    on_masto = rng.random(n) < shape.mastodon_share
    instance = rng.integers(0, shape.mastodon_instances, n)
    reupload = rng.random(n) < shape.reupload_share
    erase = rng.random(n) < shape.erase_share
    hostile = rng.random(n) < shape.hostile_share
    hostile_kind = rng.integers(0, len(HOSTILE_KINDS), n)
    people = [
        Person(
            index=i,
            user_id=f"u{i:06d}",
            x_id=int(x_ids[i]),
            username=f"user{i:06d}",
            arrival_s=float(arrival[i]),
            link_delay_s=float(link_delay[i]),
            bluesky=bool(bluesky[i]),
            mastodon_instance=int(instance[i]) if on_masto[i] else None,
            followers_declared=int(declared[i]),
            reupload_at_s=float(arrival[i] + 1800.0) if reupload[i] else None,
            erase_at_s=float(arrival[i] + link_delay[i] + 900.0) if erase[i] else None,
            hostile=HOSTILE_KINDS[int(hostile_kind[i])] if hostile[i] else None,
        )
        for i in range(n)
    ]
    return Population(shape, people, followings, followers)


# --- archives ------------------------------------------------------------------------------


def _ytd(kind: str, part: int, records: list[dict[str, object]]) -> bytes:
    body = json.dumps(records, indent=2)
    return f"window.YTD.{kind}.part{part} = {body}".encode()


def _graph_part(kind: str, part: int, ids: np.ndarray) -> bytes:
    """A follower/following part exactly as X pretty-prints it (` : `, two-space indent)."""
    return "".join(graph_lines(kind, part, ids.tolist())).encode()


def x_archive(p: Person, followings: np.ndarray, followers: np.ndarray) -> bytes:
    """A well-formed X archive zip (ARCHITECTURE §5): manifest, account, follow parts."""
    part = 10_000
    files: dict[str, bytes] = {}
    types: dict[str, dict[str, object]] = {}
    for kind, ids in (("following", followings), ("follower", followers)):
        entries = []
        for n, start in enumerate(range(0, max(len(ids), 1), part)):
            chunk = ids[start : start + part]
            name = f"data/{kind}{'' if n == 0 else f'-part{n}'}.js"
            files[name] = _graph_part(kind, n, chunk)
            entries.append(
                {"fileName": name, "globalName": f"YTD.{kind}.part{n}", "count": str(len(chunk))}
            )
        types[kind] = {"files": entries}
    account = [{"account": {"accountId": str(p.x_id), "username": p.username}}]
    types["account"] = {
        "files": [{"fileName": "data/account.js", "globalName": "YTD.account.part0", "count": "1"}]
    }
    manifest = {
        "userInfo": {"accountId": str(p.x_id), "userName": p.username, "displayName": p.username},
        "archiveInfo": {"sizeBytes": "0", "generationDate": "2025-01-20T12:00:00.000Z"},
        "dataTypes": types,
    }
    files["data/account.js"] = _ytd("account", 0, account)
    files["data/manifest.js"] = f"window.__THAR_CONFIG = {json.dumps(manifest)}".encode()
    files["Your archive.html"] = b"<html><body>archive</body></html>"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def hostile_archive(p: Person, followings: np.ndarray) -> bytes:
    """One hostile input per kind: ingest must reject it with a reason, nothing else."""
    good = x_archive(p, followings[:50], np.array([], dtype=np.int64))
    if p.hostile == "not_a_zip":
        return b"this is not a zip archive at all\n" * 64
    if p.hostile == "truncated":
        return good[: len(good) // 2]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info in zipfile.ZipFile(io.BytesIO(good)).infolist():
            data = zipfile.ZipFile(io.BytesIO(good)).read(info)
            if p.hostile == "malformed_js" and info.filename == "data/following.js":
                data = data[: len(data) // 2] + b"{{{ not json"
            z.writestr(info.filename, data)
        if p.hostile == "path_traversal":
            z.writestr("../../etc/evil.js", b"window.YTD.following.part9 = []")
        if p.hostile == "zip_bomb":
            z.writestr("data/tweets.js", b"\0" * (64 * 1024 * 1024))
    return buf.getvalue()
