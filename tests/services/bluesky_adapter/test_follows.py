"""The pure follow domain: record keys, target validation, batch planning."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from hqx.messages import FollowTarget
from services.bluesky_adapter import follows

TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
dids = st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=24, max_size=24).map(
    lambda s: f"did:plc:{s}"
)


@settings(max_examples=200)
@given(dids, dids)
def test_record_key_is_a_deterministic_tid_in_the_past(owner: str, target: str) -> None:
    k = follows.record_key(owner, target)
    assert TID.fullmatch(k)
    assert k == follows.record_key(owner, target)
    # decoded timestamp between 2015 and now
    v = 0
    for ch in k:
        v = v * 32 + "234567abcdefghijklmnopqrstuvwxyz".index(ch)
    assert 1_420_070_400 <= (v >> 10) / 1e6 < 1_720_000_000


def test_record_keys_differ_per_pair() -> None:
    owner = "did:plc:" + "a" * 24
    keys = {
        follows.record_key(
            owner,
            f"did:plc:{i:024d}".replace("0", "a")
            .replace("1", "b")
            .replace("8", "c")
            .replace("9", "d"),
        )
        for i in range(5000)
    }
    assert len(keys) == 5000
    assert follows.record_key(owner, "did:plc:" + "b" * 24) != follows.record_key(
        "did:plc:" + "b" * 24, owner
    )


def test_is_did() -> None:
    assert follows.is_did("did:plc:" + "a" * 24)
    assert follows.is_did("did:web:example.com")
    assert not follows.is_did("bob.bsky.social")
    assert not follows.is_did("did:plc:short")
    assert not follows.is_did("@did:plc:" + "a" * 24)


def t(i: int, account: str) -> FollowTarget:
    return FollowTarget(x_account_id=str(i), account=account)


def test_plan_splits_a_batch() -> None:
    owner = "did:plc:" + "o" * 24
    new, ours, theirs = ("did:plc:" + c * 24 for c in "nmt")
    existing = {ours: follows.record_key(owner, ours), theirs: "3kabcdefghijk"}
    p = follows.plan(
        owner,
        [t(1, new), t(2, ours), t(3, theirs), t(4, "carol.test"), t(5, owner), t(6, new)],
        existing,
    )
    assert [c.target.x_account_id for c in p.creates] == ["1"]
    assert p.creates[0].rkey == follows.record_key(owner, new)
    assert [x.x_account_id for x in p.done] == ["2", "6"]
    assert [x.x_account_id for x in p.already] == ["3"]
    assert [x.x_account_id for x in p.invalid] == ["4", "5"]


def test_chunks_respect_the_write_limit() -> None:
    cs = [follows.Create(t(i + 1, "did:plc:" + "a" * 24), "k") for i in range(450)]
    assert [len(c) for c in follows.chunks(cs)] == [200, 200, 50]
