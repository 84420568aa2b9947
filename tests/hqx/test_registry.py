"""Every durable of the registry, on real JetStream: each input subject reaches its consumer's
handler exactly once, a malformed message on it is dead-lettered, and the consumer goes on."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

import pytest

from hqx import bus, subjects
from hqx.consumer import Delivery
from hqx.forward_first import is_forward
from hqx.messages import (
    ArchiveRejected,
    ArchiveUnpacked,
    ArchiveUploaded,
    ConsentChanged,
    DeadLetter,
    FollowDone,
    FollowRequested,
    FollowTarget,
    GraphIngested,
    IdentityLinked,
    IdentityProven,
    IdentityUnlinked,
    Message,
    MigrationCompleted,
    UserEraseRequested,
)
from hqx.outcomes import Done, Outcome
from hqx.service import Service
from hqx.settings import ServiceSettings
from hqx.subjects import CONSUMERS, CONSUMERS_BY_SERVICE, ConsumerSpec, Network, Stream
from tests.eventually import drained


def samples(u: str) -> dict[str, Message]:
    """One valid message per subject family, keyed by its filter subject."""
    target = FollowTarget(x_account_id="9007199254740993", account="did:plc:abc")
    msgs: list[tuple[str, Message]] = [
        (subjects.archive_uploaded(u), ArchiveUploaded(user_id=u, object_name=f"{u}/a", size=3)),
        (subjects.archive_unpacked(u), ArchiveUnpacked(user_id=u, object_name=f"{u}/a")),
        (
            subjects.archive_rejected(u),
            ArchiveRejected(user_id=u, object_name=f"{u}/a", reason="not_a_zip", message="no"),
        ),
        (
            subjects.graph_ingested(u),
            GraphIngested(
                user_id=u,
                owner_x_account_id="1",
                following_count=0,
                follower_count=0,
                graph_version=1,
            ),
        ),
        (
            subjects.identity_linked(u),
            IdentityLinked(user_id=u, network=Network.BLUESKY, account="did:plc:abc"),
        ),
        (subjects.identity_unlinked(u), IdentityUnlinked(user_id=u, network=Network.MASTODON)),
        (subjects.identity_proven(u), IdentityProven(user_id=u, x_account_id="12")),
        (
            subjects.consent_changed(u),
            ConsentChanged(user_id=u, auto_reconnect={Network.BLUESKY: True}),
        ),
        (subjects.migration_completed(u), MigrationCompleted(user_id=u)),
        (subjects.user_erase(u), UserEraseRequested(user_id=u)),
    ]
    for net, lane in itertools.product(
        Network, (subjects.follow_requested, subjects.follow_reconnect)
    ):
        msgs.append((lane(net, u), FollowRequested(user_id=u, network=net, targets=(target,))))
    for net in Network:
        msgs.append((subjects.follow_done(net, u), FollowDone(user_id=u, network=net, results=())))
    return dict(msgs)


def matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    return len(p) == len(s) and all(a in ("*", b) for a, b in zip(p, s, strict=True))


def inputs(spec: ConsumerSpec, u: str) -> dict[str, Message]:
    return {s: m for s, m in samples(u).items() if any(matches(f, s) for f in spec.filter_subjects)}


def test_every_filter_subject_has_a_sample() -> None:
    for spec in CONSUMERS:
        covered = {f for f in spec.filter_subjects for s in samples("u") if matches(f, s)}
        assert covered == set(spec.filter_subjects), spec.durable


@pytest.mark.parametrize("spec", CONSUMERS, ids=lambda s: s.durable)
async def test_each_input_reaches_its_handler_once_and_bad_ones_are_dead_lettered(
    settings: ServiceSettings, spec: ConsumerSpec, user_id: str
) -> None:
    seen: Counter[str] = Counter()

    async def handler(msg: Message, delivery: Delivery) -> Outcome:
        seen[delivery.subject] += 1
        return Done()

    wanted = inputs(spec, user_id)
    accepted = tuple({type(m) for m in wanted.values()})
    svc = Service(spec.service, settings, uses_db=False, uses_redis=False)
    svc.consume(spec, accepted, handler)
    await svc.start()
    try:
        for subject, msg in wanted.items():
            await svc.publish(subject, msg)
            await svc.js.publish(subject, b'{"schema": "hqx.nothing/v1"}')
        await drained(svc.js, spec.stream.value, spec.durable)
        assert seen == dict.fromkeys(wanted, 1)
        info = await svc.js.stream_info(Stream.DLQ.value)
        assert info.state.messages == len(wanted)
        letter = await svc.js.get_last_msg(Stream.DLQ.value, subjects.dlq(spec.service, user_id))
        assert DeadLetter.model_validate_json(letter.data).reason == "unknown_schema"
    finally:
        await svc.stop()


async def test_topology_is_bounded_and_reused(settings: ServiceSettings) -> None:
    """Every stream and the bucket have a max size and age; a second start changes nothing."""
    svc = Service("purger", settings, uses_db=False, uses_redis=False)
    await svc.start()
    try:
        before = {}
        for s in subjects.STREAMS:
            info = await svc.js.stream_info(s.name.value)
            assert info.config.max_bytes and info.config.max_bytes > 0
            assert info.config.max_age and info.config.max_age > 0
            before[s.name] = info.config
        await svc.archives()
        bucket = await svc.js.stream_info(f"OBJ_{subjects.ARCHIVE_BUCKET}")
        assert bucket.config.max_bytes and bucket.config.max_bytes > 0
        assert bucket.config.max_age == settings.archive_max_age_s
        await bus.ensure_topology(svc.js, settings)  # as a second `hqx up` would
        for s in subjects.STREAMS:
            assert (await svc.js.stream_info(s.name.value)).config == before[s.name]
        for c in CONSUMERS:
            info = await svc.js.consumer_info(c.stream.value, c.durable)
            assert info.config.max_deliver == c.max_deliver
            assert info.config.ack_wait == c.ack_wait_s
    finally:
        await svc.stop()


def test_deletions_never_queue_behind_the_completion_projection() -> None:
    """The purger's deadline-bound work (erase, raw archive) has its own durable: on exodus day
    `follow.done` arrives hundreds per second and must not delay an erase behind it."""

    def durable_of(subject: str) -> str:
        (spec,) = [
            c
            for c in subjects.CONSUMERS_BY_SERVICE["purger"]
            if any(matches(f, subject) for f in c.filter_subjects)
        ]
        return spec.durable

    projection = durable_of(subjects.follow_done(Network.BLUESKY, "u1"))
    assert durable_of(subjects.follow_done(Network.MASTODON, "u1")) == projection
    deadline_bound = (subjects.user_erase, subjects.archive_unpacked, subjects.archive_rejected)
    for subject in deadline_bound:
        assert durable_of(subject("u1")) != projection


async def test_a_durable_is_changed_only_by_the_service_that_consumes_it(
    settings: ServiceSettings,
) -> None:
    """The Bluesky adapter's shorter ack_wait (its settings) survives other services' starts,
    which once declared every durable of the registry again and undid it."""
    forward = next(c for c in CONSUMERS_BY_SERVICE["bluesky_adapter"] if is_forward(c))
    svc = Service("purger", settings, uses_db=False, uses_redis=False)
    await svc.start()
    try:

        async def ack_wait() -> float | None:
            info = await svc.js.consumer_info(forward.stream.value, forward.durable)
            return info.config.ack_wait

        await bus.ensure_topology(svc.js, settings, own=[replace(forward, ack_wait_s=8.0)])
        assert await ack_wait() == 8.0
        await bus.ensure_topology(svc.js, settings)  # another service starts
        assert await ack_wait() == 8.0
        await bus.ensure_topology(svc.js, settings, own=[forward])  # its own, without override
        assert await ack_wait() == forward.ack_wait_s
    finally:
        await svc.stop()
