"""The follow domain, pure: valid targets, deterministic record keys, what a batch must create."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hqx.messages.follow import FollowTarget

FOLLOW_COLLECTION = "app.bsky.graph.follow"
MAX_WRITES = 200  # com.atproto.repo.applyWrites refuses more
_B32 = "234567abcdefghijklmnopqrstuvwxyz"  # atproto's base32-sortable alphabet
_DID_PLC = re.compile(r"^did:plc:[a-z2-7]{24}$")
_DID_WEB = re.compile(r"^did:web:[A-Za-z0-9.-]+(%3A[0-9]+)?(:[A-Za-z0-9._~-]+)*$")
# NOTE: record keys look like TIDs from 2015-01-01 + up to 2^48 us (about 8.9 years), so they
# are always in the past: no consumer mistakes them for future posts.
_TID_EPOCH_US = 1_420_070_400 * 1_000_000
_TID_SPAN_US = 1 << 48


def is_did(account: str) -> bool:
    """A DID the network accepts as a follow subject (a handle is not one)."""
    return bool(_DID_PLC.fullmatch(account) or _DID_WEB.fullmatch(account))


def record_key(owner_did: str, target_did: str) -> str:
    """The follow record's key, derived from (owner, target): a retried create collides.

    A valid TID (13 base32-sortable chars, top bit clear), so the PDS accepts it for
    `app.bsky.graph.follow` whose lexicon key type is `tid`.
    """
    h = hashlib.sha256(f"hqx-follow|{owner_did}|{target_did}".encode()).digest()
    n = int.from_bytes(h[:8], "big")
    ts = _TID_EPOCH_US + (n >> 16) % _TID_SPAN_US
    clock = n & 0x3FF
    v = (ts << 10) | clock
    return "".join(_B32[(v >> (5 * i)) & 31] for i in range(12, -1, -1))


def follow_record(subject: str, created_at: datetime | None = None) -> dict[str, str]:
    at = (created_at or datetime.now(UTC)).isoformat(timespec="milliseconds")
    return {
        "$type": FOLLOW_COLLECTION,
        "subject": subject,
        "createdAt": at.replace("+00:00", "Z"),
    }


@dataclass(frozen=True)
class Create:
    target: FollowTarget
    rkey: str


@dataclass
class Plan:
    """What a batch needs: creates to make, and targets settled without a network call."""

    creates: list[Create] = field(default_factory=list)
    done: list[FollowTarget] = field(default_factory=list)  # our record is already there
    already: list[FollowTarget] = field(default_factory=list)  # followed by the person
    invalid: list[FollowTarget] = field(default_factory=list)


def plan(owner_did: str, targets: Sequence[FollowTarget], existing: Mapping[str, str]) -> Plan:
    """Split a batch given the repo's follows (`existing`: subject DID -> record key).

    Nobody is followed twice: a subject with a record (ours or the person's) is not created
    again; a target repeated in the batch is planned once.
    """
    out = Plan()
    seen: set[str] = set()
    for t in targets:
        if not is_did(t.account) or t.account == owner_did:
            out.invalid.append(t)
            continue
        rkey = record_key(owner_did, t.account)
        if t.account in existing:
            (out.done if existing[t.account] == rkey else out.already).append(t)
        elif t.account in seen:
            out.done.append(t)
        else:
            seen.add(t.account)
            out.creates.append(Create(t, rkey))
    return out


def chunks(creates: Sequence[Create], size: int = MAX_WRITES) -> list[list[Create]]:
    return [list(creates[i : i + size]) for i in range(0, len(creates), size)]
