"""Subjects, streams and durable consumers: the one registry of who publishes and consumes what.

No subject, stream or durable literal appears anywhere else in the code. Subjects carry the
user id as their last token, so one user's messages can be found and purged by subject.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

PREFIX = "hqx"
USER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Network(StrEnum):
    BLUESKY = "bluesky"
    MASTODON = "mastodon"


class Stream(StrEnum):
    ARCHIVES = "ARCHIVES"
    FOLLOWS = "FOLLOWS"
    EVENTS = "EVENTS"
    DLQ = "DLQ"


ARCHIVE_BUCKET = "archives"


def check_user_id(user_id: str) -> str:
    """User ids become subject tokens: refuse anything that could widen a subject filter."""
    if not USER_ID_RE.fullmatch(user_id):
        raise ValueError(f"invalid user id token: {user_id!r}")
    return user_id


def _s(*tokens: str) -> str:
    return ".".join((PREFIX, *tokens))


# --- builders: one per subject family (user id last) -------------------------------------


def archive_uploaded(user_id: str) -> str:
    return _s("archive", "uploaded", check_user_id(user_id))


def archive_unpacked(user_id: str) -> str:
    return _s("archive", "unpacked", check_user_id(user_id))


def archive_rejected(user_id: str) -> str:
    return _s("archive", "rejected", check_user_id(user_id))


def graph_ingested(user_id: str) -> str:
    return _s("graph", "ingested", check_user_id(user_id))


def identity_linked(user_id: str) -> str:
    return _s("identity", "linked", check_user_id(user_id))


def identity_unlinked(user_id: str) -> str:
    return _s("identity", "unlinked", check_user_id(user_id))


def identity_proven(user_id: str) -> str:
    """The user proved their X account id (X sign-in)."""
    return _s("identity", "proven", check_user_id(user_id))


def account_paused(network: Network | str, user_id: str) -> str:
    """A linked account stopped working (session revoked / expired): the user must act."""
    return _s("account", "paused", Network(network).value, check_user_id(user_id))


def match_found(user_id: str) -> str:
    return _s("match", "found", check_user_id(user_id))


# The FOLLOWS stream's two lanes, in the order each adapter declares their durables.
FOLLOW_LANES = ("requested", "reconnect")


def follow_requested(network: Network | str, user_id: str) -> str:
    """The user's own migration: follows planned when they upload or link (forward matches)."""
    return _s("follow", "requested", Network(network).value, check_user_id(user_id))


def follow_reconnect(network: Network | str, user_id: str) -> str:
    """Follows of late joiners (reverse matches, a consent catch-up): a lane of their own, so
    the burst a well-followed joiner sets off never queues ahead of someone's migration."""
    return _s("follow", "reconnect", Network(network).value, check_user_id(user_id))


def follow_done(network: Network | str, user_id: str) -> str:
    return _s("follow", "done", Network(network).value, check_user_id(user_id))


def migration_completed(user_id: str) -> str:
    return _s("migration", "completed", check_user_id(user_id))


def consent_changed(user_id: str) -> str:
    return _s("consent", "changed", check_user_id(user_id))


def user_erase(user_id: str) -> str:
    return _s("user", "erase", check_user_id(user_id))


def data_purged(user_id: str) -> str:
    return _s("data", "purged", check_user_id(user_id))


def dlq(service: str, user_id: str) -> str:
    return _s("dlq", service.replace("_", "-"), user_id if USER_ID_RE.fullmatch(user_id) else "_")


def user_filters(user_id: str) -> tuple[str, ...]:
    """Subject filters matching every message of one user, in every stream (for erase)."""
    u = check_user_id(user_id)
    return (_s("*", "*", u), _s("*", "*", "*", u))


def any_user(builder: Callable[..., str], *args: str) -> str:
    """The filter matching a subject family for every user: `any_user(graph_ingested)`."""
    return builder(*args, "_").rsplit(".", 1)[0] + ".*"


def user_id_of(subject: str) -> str:
    """The user id of a subject built above (its last token)."""
    return subject.rsplit(".", 1)[-1]


# --- streams -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSpec:
    """A stream with explicit limits, so a flood cannot fill the disk."""

    name: Stream
    subjects: tuple[str, ...]
    work_queue: bool
    max_age_s: float
    # Share of the JetStream disk budget (`HQX_JETSTREAM_MAX_BYTES`); the archive bucket has
    # the rest (ARCHIVE_BUCKET_SHARE).
    max_bytes_share: float
    max_msg_size: int = 1024 * 1024
    duplicate_window_s: float = 120.0


DAY = 86_400.0
ARCHIVE_BUCKET_SHARE = 0.6

STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(Stream.ARCHIVES, (_s("archive", "uploaded", "*"),), True, DAY, 0.05),
    StreamSpec(
        Stream.FOLLOWS,
        tuple(_s("follow", lane, "*", "*") for lane in FOLLOW_LANES),
        True,
        14 * DAY,
        0.15,
        # NOTE: content-derived Nats-Msg-Id; a re-planned batch within this window is dropped.
        duplicate_window_s=6 * 3600.0,
    ),
    StreamSpec(
        Stream.EVENTS,
        tuple(
            _s(*t)
            for t in (
                ("archive", "unpacked", "*"),
                ("archive", "rejected", "*"),
                ("graph", "ingested", "*"),
                ("identity", "linked", "*"),
                ("identity", "unlinked", "*"),
                ("identity", "proven", "*"),
                ("account", "paused", "*", "*"),
                ("match", "found", "*"),
                ("follow", "done", "*", "*"),
                ("migration", "completed", "*"),
                ("consent", "changed", "*"),
                ("user", "erase", "*"),
                ("data", "purged", "*"),
            )
        ),
        False,
        7 * DAY,
        0.15,
    ),
    StreamSpec(Stream.DLQ, (_s("dlq", "*", "*"),), False, 14 * DAY, 0.05),
)

STREAM_BY_NAME = {s.name: s for s in STREAMS}


# --- durable consumers: the registry a newcomer reads to see who consumes what ----------


@dataclass(frozen=True)
class ConsumerSpec:
    """One durable pull consumer. `durable` is what KEDA and dashboards name too."""

    service: str
    durable: str
    stream: Stream
    filter_subjects: tuple[str, ...]
    max_deliver: int = 10
    ack_wait_s: float = 60.0
    max_ack_pending: int = 1000
    backoff_s: tuple[float, ...] = field(default=(1.0, 5.0, 30.0, 120.0, 600.0))


def _durable(service: str, what: str) -> str:
    return f"{service.replace('_', '-')}-{what}"


def _follow_lanes(service: str, network: Network) -> tuple[ConsumerSpec, ...]:
    """An adapter's two durables: people's own migrations, and late joiners (`reconnect`).

    NOTE: one durable was a single FIFO; a well-followed joiner's burst of reverse matches
    (one batch per follower) queued every newcomer's forward batches behind it.
    """
    return tuple(
        ConsumerSpec(
            service,
            _durable(service, f"follow-{lane}"),
            Stream.FOLLOWS,
            (_s("follow", lane, network.value, "*"),),
            max_deliver=-1,  # throttled accounts are naked with a delay: not failures
            ack_wait_s=120.0,
            max_ack_pending=2000,
        )
        for lane in FOLLOW_LANES
    )


CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec(
        "ingest",
        _durable("ingest", "archive-uploaded"),
        Stream.ARCHIVES,
        (_s("archive", "uploaded", "*"),),
        max_deliver=5,
        # The handler sends in_progress every 15 s while it streams and stores a big archive,
        # so a killed replica's archive is redelivered within 45 s.
        ack_wait_s=45.0,
        max_ack_pending=64,
    ),
    ConsumerSpec(
        "matcher",
        _durable("matcher", "events"),
        Stream.EVENTS,
        tuple(
            _s(*t)
            for t in (
                ("graph", "ingested", "*"),
                ("identity", "linked", "*"),
                ("identity", "unlinked", "*"),
                ("identity", "proven", "*"),
                ("consent", "changed", "*"),
                ("follow", "done", "*", "*"),
                ("user", "erase", "*"),
            )
        ),
    ),
    *_follow_lanes("bluesky_adapter", Network.BLUESKY),
    *_follow_lanes("mastodon_adapter", Network.MASTODON),
    # NOTE: two purger durables. Deletions promised by a deadline (the raw archive, an erase)
    # must never queue behind the completion projection, which gets one `follow.done` per
    # batch: on exodus day those arrive hundreds per second and a single durable fell tens of
    # thousands of messages behind, erasures and archive deletions with it.
    ConsumerSpec(
        "purger",
        _durable("purger", "lifecycle"),
        Stream.EVENTS,
        (
            _s("archive", "unpacked", "*"),
            _s("archive", "rejected", "*"),
            _s("migration", "completed", "*"),
            _s("user", "erase", "*"),
        ),
    ),
    ConsumerSpec(
        "purger",
        _durable("purger", "follow-done"),
        Stream.EVENTS,
        # The purger projects the follow ledger: nothing planned left -> migration.completed.
        (_s("follow", "done", "*", "*"),),
    ),
)

CONSUMERS_BY_SERVICE: dict[str, tuple[ConsumerSpec, ...]] = {}
for _c in CONSUMERS:
    CONSUMERS_BY_SERVICE[_c.service] = (*CONSUMERS_BY_SERVICE.get(_c.service, ()), _c)

# NOTE: the gateway reads progress with an ephemeral ordered consumer per process (every replica
# must see every user's events for its open SSE streams), so it has no durable here.

SERVICES = ("gateway", "ingest", "matcher", "bluesky_adapter", "mastodon_adapter", "purger")
