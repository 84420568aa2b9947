"""The driver: plays the population's day against the running platform, and watches it.

It does what the gateway would do for each person, on the bus (the gateway's X sign-in and
upload API need a browser session; the messages and rows are the same): a `users` row with a
proven X id + `identity.proven` + `consent.changed` (automatic reconnection on), the archive put
in the `archives` object store + `archive.uploaded`, later each account linked (a Bluesky
session created on the simulated PDS, or a Mastodon token; stored encrypted in `identities`)
+ `identity.linked`, re-uploads and `user.erase`. Every step retries across a NATS or
PostgreSQL restart. Meanwhile it samples each durable's lag and each service's peak memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
from nats.js.api import ObjectMeta

from bench.exodus import calibration
from bench.exodus.loopback import ForkedServer
from bench.exodus.orchestra import Orchestra, process_cpu_s
from bench.exodus.population import Person, Population
from bench.exodus.sim_bluesky import BlueskySim, Created
from bench.exodus.sim_mastodon import FollowCall, MastodonSim
from hqx import erasure, subjects
from hqx.crypto import TokenCipher
from hqx.messages import (
    ArchiveRejected,
    ArchiveUnpacked,
    ArchiveUploaded,
    ConsentChanged,
    GraphIngested,
    IdentityLinked,
    IdentityProven,
    Message,
    UserEraseRequested,
)
from hqx.settings import ServiceSettings
from hqx.subjects import CONSUMERS, Network, Stream

log = logging.getLogger(__name__)
PDS_HOSTS = [f"127.0.0.{n}" for n in range(2, 6)]


def instance_addresses(n: int) -> list[str]:
    return [f"127.0.0.{10 + k}" for k in range(n)]


@dataclass
class Networks:
    """The simulated networks of a run, each served on loopback from a child process of its
    own (`ForkedServer`), forked once everyone's accounts are registered."""

    factor: float
    instances: int
    # What each network starts with, read only to register accounts before the fork: once
    # started, the children's copies are the live ones (`recorded`, `drop`).
    _bluesky: BlueskySim = field(init=False)
    _mastodon: MastodonSim = field(init=False)
    _servers: list[ForkedServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._bluesky = BlueskySim(self.factor)
        self._mastodon = MastodonSim(self.factor)
        self._servers = [
            ForkedServer(self._bluesky, PDS_HOSTS),
            ForkedServer(self._mastodon, instance_addresses(self.instances)),
        ]

    def start(self, pop: Population) -> Networks:
        """Everyone already has their accounts on the networks before the day starts."""
        for server in self._servers:
            server.bind()  # an instance's domain is its address and port
        self._register(pop)
        for server in self._servers:
            server.start()
        return self

    def pds_url(self, p: Person) -> str:
        return self._servers[0].url(PDS_HOSTS[p.index % len(PDS_HOSTS)])

    def instance_url(self, p: Person) -> str:
        assert p.mastodon_instance is not None
        return self._servers[1].url(instance_addresses(self.instances)[p.mastodon_instance])

    def acct(self, p: Person) -> str:
        return f"{p.username}@{self.instance_url(p).removeprefix('http://')}"

    def _register(self, pop: Population) -> None:
        for p in pop.people:
            if p.bluesky:
                host = PDS_HOSTS[p.index % len(PDS_HOSTS)]
                self._bluesky.add_account(p.did, p.handle, f"pw-{p.user_id}", host)
            if p.mastodon_instance is not None:
                domain = self.instance_url(p).removeprefix("http://")
                self._mastodon.add_account(
                    p.username, domain, f"tok-{p.user_id}", max(1, p.followers_declared // 5)
                )

    def drop(self, seconds: float) -> None:
        until = time.time() + seconds
        for server in self._servers:
            server.call("outage", until)

    def recorded(
        self,
    ) -> tuple[tuple[list[Created], list[str]], tuple[list[FollowCall], list[str], Counter[str]]]:
        """What each network recorded so far (`BlueskySim.recorded`, `MastodonSim.recorded`)."""
        bluesky, mastodon = self._servers
        return bluesky.call("recorded"), mastodon.call("recorded")

    def cpu_s(self) -> float:
        return sum(process_cpu_s(s.pid) for s in self._servers if s.pid is not None)

    def stop(self) -> None:
        for s in self._servers:
            s.stop()


@dataclass
class Timeline:
    """What the driver did, in wall-clock seconds (time.time())."""

    t0: float = 0.0
    uploads: dict[str, list[float]] = field(default_factory=dict)
    links: dict[tuple[str, str], float] = field(default_factory=dict)
    erased: dict[str, float] = field(default_factory=dict)
    lag: list[dict[str, Any]] = field(default_factory=list)  # {t, durable: (pending, acked)}
    chaos: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    retried: Counter[str] = field(default_factory=Counter)
    skipped_erased: int = 0  # steps racing the person's own erase (the gateway refuses them)
    load_end: float = 0.0
    drained_at: float | None = None
    # (scheduled wall time, seconds late) of each step as it began: a driver that falls behind
    # its schedule offers a smoother load than the day it was asked to play
    late: list[tuple[float, float]] = field(default_factory=list)
    # user id -> wall time of their first `graph.ingested` (read off the events stream after
    # the day): where an upload's wait for its first follow went, ingest or what came after
    ingested: dict[str, float] = field(default_factory=dict)
    # CPU seconds of `calibration.python_work_s`, read every `calibration.EVERY_S`
    speed: list[float] = field(default_factory=list)


class Erased(Exception):
    """The person was erased meanwhile: the step has nothing left to do (not a failure)."""


async def retrying(what: str, fn: Callable[[], Awaitable[Any]], tl: Timeline, budget_s=120.0):
    """Retry one step across a server restart; give up (and record it) after `budget_s`."""
    deadline = time.monotonic() + budget_s
    delay = 0.2
    while True:
        try:
            return await fn()
        except Erased:
            tl.skipped_erased += 1
            return None
        except Exception as e:
            tl.retried[f"{what.split()[0]}: {type(e).__name__}"] += 1
            if time.monotonic() > deadline:
                tl.failures.append(f"{what}: {type(e).__name__}: {str(e)[:120]}")
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)


@dataclass
class Driver:
    pop: Population
    orchestra: Orchestra
    networks: Networks
    factor: float
    concurrency: int = 32
    tl: Timeline = field(default_factory=Timeline)
    nc: Any = None
    js: Any = None
    pool: asyncpg.Pool | None = None
    cipher: TokenCipher | None = None

    def wall(self, network_s: float) -> float:
        return self.tl.t0 + network_s / self.factor

    async def connect(self) -> None:
        env = self.orchestra.stack.env

        async def quiet(e: Exception) -> None:
            log.debug("nats: %s", e)  # restarts are part of the chaos; steps retry

        self.nc = await nats.connect(
            env["NATS_URL"],
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            name="bench",
            error_cb=quiet,
        )
        self.js = self.nc.jetstream(timeout=10)
        self.pool = await asyncpg.create_pool(env["DATABASE_URL"], min_size=2, max_size=16)
        self.cipher = TokenCipher(ServiceSettings().token_keys)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()
        with contextlib.suppress(Exception):
            await self.pool.close()  # type: ignore[union-attr]

    # --- one person's steps -------------------------------------------------------------

    async def _publish(self, subject: str, msg: Message, msg_id: str) -> None:
        await self.js.publish(subject, msg.to_bytes(), headers={"Nats-Msg-Id": msg_id})

    async def sign_in(self, p: Person) -> None:
        assert self.pool is not None
        # NOTE: like the gateway, the consent is written at once and then announced.
        await self.pool.execute(
            "insert into users (id, x_account_id, x_username, x_proven, x_proven_at,"
            " auto_reconnect) values ($1, $2, $3, true, now(), $4) on conflict (id) do nothing",
            p.user_id,
            p.x_id,
            p.username,
            sorted(n.value for n in Network),
        )
        uid = p.user_id
        proven = IdentityProven(user_id=uid, x_account_id=str(p.x_id), x_username=p.username)
        await self._publish(subjects.identity_proven(uid), proven, f"proven-{uid}")
        consent = ConsentChanged(user_id=uid, auto_reconnect={Network(n): True for n in Network})
        await self._publish(subjects.consent_changed(uid), consent, f"consent-{uid}")

    async def upload(self, p: Person, n: int) -> None:
        data = self.pop.archive(p.index)
        name = f"{p.user_id}/bench{n}"
        store = await self.js.object_store(subjects.ARCHIVE_BUCKET)
        await store.put(name, io.BytesIO(data), meta=ObjectMeta(name=name))
        msg = ArchiveUploaded(
            user_id=p.user_id,
            object_name=name,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            proven_x_account_id=str(p.x_id),
        )
        await self._publish(subjects.archive_uploaded(p.user_id), msg, f"upload-{name}")
        if "ingest" in self.orchestra.missing:
            await self.standin_ingest(p, n, name)

    async def standin_ingest(self, p: Person, n: int, name: str) -> None:
        """What ingest would do, when it has no entry point yet (said in the report): store the
        graph from the population (not parsed from the zip), publish its facts."""
        assert self.pool is not None
        uid = p.user_id
        if p.hostile:
            rej = ArchiveRejected(user_id=uid, object_name=name, reason=p.hostile, message="")
            await self._publish(subjects.archive_rejected(uid), rej, f"rejected-{name}")
        else:
            following, followers = self.pop.followings(p.index), self.pop.followers(p.index)
            rows = [(uid, 1, int(x)) for x in following] + [(uid, 2, int(x)) for x in followers]
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "insert into graphs (user_id, owner_x_id, owner_username, following_count,"
                    " follower_count, version) values ($1, $2, $3, $4, $5, $6)"
                    " on conflict (user_id) do update set version = excluded.version,"
                    " ingested_at = now()",
                    uid,
                    p.x_id,
                    p.username,
                    len(following),
                    len(followers),
                    n,
                )
                await conn.execute("delete from graph_edges where user_id = $1", uid)
                await conn.copy_records_to_table(
                    "graph_edges", records=rows, columns=["user_id", "direction", "x_account_id"]
                )
            msg = GraphIngested(
                user_id=uid,
                owner_x_account_id=str(p.x_id),
                owner_username=p.username,
                following_count=len(following),
                follower_count=len(followers),
                graph_version=n,
            )
            await self._publish(subjects.graph_ingested(uid), msg, f"graph-{name}")
        done = ArchiveUnpacked(user_id=uid, object_name=name)
        await self._publish(subjects.archive_unpacked(uid), done, f"unpacked-{name}")

    async def link(self, p: Person, network: str) -> None:
        assert self.pool is not None and self.cipher is not None
        if network == "bluesky":
            from services.bluesky_adapter.client import create_session

            url = self.networks.pds_url(p)
            s = await create_session(url, p.handle, f"pw-{p.user_id}")
            secret, account, handle = s.session.get_secret_value(), p.did, p.handle
            auth = "app_password"
        else:
            url = self.networks.instance_url(p)
            secret = json.dumps({"access_token": f"tok-{p.user_id}"})
            account = handle = self.networks.acct(p)
            auth = "oauth"
        await self.pool.execute(
            "insert into identities (user_id, network, account, handle, instance, auth_kind,"
            " token_cipher, status) values ($1, $2, $3, $4, $5, $6, $7, 'active')"
            " on conflict (user_id, network) do nothing",
            p.user_id,
            network,
            account,
            handle,
            url,
            auth,
            self.cipher.encrypt(secret),
        )
        msg = IdentityLinked(
            user_id=p.user_id,
            network=Network(network),
            account=account,
            handle=handle,
            instance=url,
        )
        await self._publish(subjects.identity_linked(p.user_id), msg, f"link-{p.user_id}-{network}")

    async def erase(self, p: Person) -> None:
        assert self.pool is not None
        await erasure.tombstone(self.pool, p.user_id)  # as the gateway's DELETE /api/me does
        msg = UserEraseRequested(user_id=p.user_id)
        await self._publish(subjects.user_erase(p.user_id), msg, f"erase-{p.user_id}")

    # --- the day ------------------------------------------------------------------------

    def schedule(self) -> list[tuple[float, int, str, Person, str]]:
        """(wall time, order, step, person, arg) for every step of every person."""
        out: list[tuple[float, int, str, Person, str]] = []
        for p in self.pop.people:
            out.append((self.wall(p.arrival_s), 0, "arrive", p, ""))
            for net in p.networks():
                out.append((self.wall(p.arrival_s + p.link_delay_s), 1, "link", p, net))
            if p.reupload_at_s is not None:
                out.append((self.wall(p.reupload_at_s), 2, "reupload", p, ""))
            if p.erase_at_s is not None:
                out.append((self.wall(p.erase_at_s), 3, "erase", p, ""))
        out.sort(key=lambda x: (x[0], x[1], x[3].index))
        return out

    async def _step(
        self, at: float, step: str, p: Person, arg: str, sem: asyncio.Semaphore
    ) -> None:
        async with sem:
            tl = self.tl
            tl.late.append((at, time.time() - at))
            if step == "arrive":
                await retrying(f"sign_in {p.user_id}", lambda: self._ok(self.sign_in(p), p), tl)
                t = time.time()
                ok = await retrying(
                    f"upload {p.user_id}", lambda: self._ok(self.upload(p, 1), p), tl
                )
                if ok:
                    tl.uploads.setdefault(p.user_id, []).append(t)
            elif step == "link":
                ok = await retrying(
                    f"link {p.user_id} {arg}", lambda: self._ok(self.link(p, arg), p), tl
                )
                if ok:
                    tl.links[(p.user_id, arg)] = time.time()
            elif step == "reupload":
                t = time.time()
                if await retrying(
                    f"reupload {p.user_id}", lambda: self._ok(self.upload(p, 2), p), tl
                ):
                    tl.uploads.setdefault(p.user_id, []).append(t)
            elif step == "erase":
                t = time.time()
                if await retrying(f"erase {p.user_id}", lambda: self._ok(self.erase(p), p), tl):
                    tl.erased[p.user_id] = t

    @staticmethod
    async def _ok(aw: Awaitable[Any], p: Person) -> bool:
        try:
            await aw
        except (asyncpg.ForeignKeyViolationError, asyncpg.RaiseError) as e:
            if p.erase_at_s is None:
                raise
            # NOTE: only an erase removes the users row (and 0006 refuses it back): the erase
            # step may overtake this person's upload or link.
            raise Erased() from e
        return True

    async def play(self) -> None:
        """Run every step at its time; returns when the last step is done."""
        sem = asyncio.Semaphore(self.concurrency)
        tasks: list[asyncio.Task[None]] = []
        for at, _, step, p, arg in self.schedule():
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._step(at, step, p, arg, sem)))
        await asyncio.gather(*tasks)
        self.tl.load_end = time.time()

    async def sample_lag(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for c in CONSUMERS:
            if c.service in self.orchestra.missing:
                continue  # nobody consumes it: its backlog says nothing about the pipeline
            with contextlib.suppress(Exception):
                info = await self.js.consumer_info(c.stream.value, c.durable, timeout=2)
                out[c.durable] = (
                    int(info.num_pending or 0) + int(info.num_ack_pending or 0),
                    int(info.ack_floor.consumer_seq or 0) if info.ack_floor else 0,
                )
        return out

    async def watch(self, stop: asyncio.Event, every_s: float = 0.5) -> None:
        next_reading = time.monotonic()
        while not stop.is_set():
            lag = await self.sample_lag()
            if lag:
                self.tl.lag.append({"t": time.time(), **lag})
            self.orchestra.sample_rss()
            self.orchestra.sample_cpu()
            for key in self.orchestra.revive():
                self.tl.chaos.append((time.time(), f"{key} exited, restarted"))
            if time.monotonic() >= next_reading:
                self.tl.speed.append(calibration.python_work_s())
                next_reading = time.monotonic() + calibration.EVERY_S
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    async def drain(self, timeout_s: float, quiet_samples: int = 6) -> bool:
        """Wait until every durable has nothing pending or unacked for a while."""
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while time.monotonic() < deadline:
            lag = await self.sample_lag()
            busy = sum(v[0] for v in lag.values())
            quiet = quiet + 1 if lag and busy == 0 else 0
            if quiet >= quiet_samples:
                self.tl.drained_at = time.time()
                return True
            await asyncio.sleep(0.5)
        return False

    async def read_ingested(self) -> None:
        """Fill `tl.ingested` from the events stream (kept for days; an erase purges its own)."""
        sub = await self.js.subscribe(
            f"{subjects.PREFIX}.graph.ingested.*",
            stream=Stream.EVENTS.value,
            ordered_consumer=True,
            deliver_policy=nats.js.api.DeliverPolicy.ALL,
        )
        try:
            while True:
                try:
                    m = await sub.next_msg(timeout=5)
                except nats.errors.TimeoutError:
                    break
                uid = subjects.user_id_of(m.subject)
                at = m.metadata.timestamp.timestamp()
                self.tl.ingested[uid] = min(at, self.tl.ingested.get(uid, at))
                if m.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()

    async def leftovers(self) -> dict[str, Any]:
        """Objects still in the archive bucket, and the DLQ's dead letters by user."""
        out: dict[str, Any] = {"objects": [], "dlq": []}
        store = await self.js.object_store(subjects.ARCHIVE_BUCKET)
        with contextlib.suppress(Exception):  # "no objects" is an error in nats-py
            out["objects"] = [o.name for o in await store.list() if not o.deleted]
        sub = await self.js.subscribe(
            subjects.STREAM_BY_NAME[Stream.DLQ].subjects[0],
            stream=Stream.DLQ.value,
            ordered_consumer=True,
            deliver_policy=nats.js.api.DeliverPolicy.ALL,
        )
        info = await self.js.stream_info(Stream.DLQ.value)
        for _ in range(int(info.state.messages)):
            try:
                m = await sub.next_msg(timeout=5)
            except Exception:
                break
            body = json.loads(m.data)
            out["dlq"].append(
                (subjects.user_id_of(m.subject), body.get("service"), body.get("reason"))
            )
        await sub.unsubscribe()
        return out
