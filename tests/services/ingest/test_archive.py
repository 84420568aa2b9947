"""The streaming archive parser: exact round-trips of generated graphs, and every hostile case."""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hqx.errors import ArchiveRejectedError, Reason
from services.ingest.archive import parse_archive
from services.ingest.limits import Limits
from tests.factories.archives import (
    HOSTILE_MAX_ENTRIES,
    ArchiveSpec,
    account_text,
    build_archive,
    deflated_entry,
    good_members,
    graph_lines,
    hostile_corpus,
    random_ids,
    raw_zip,
)

CORPUS = hostile_corpus()


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def reference_sha256(ids: list[int]) -> str:
    return hashlib.sha256("\n".join(str(i) for i in sorted(set(ids))).encode()).hexdigest()


ids_strategy = st.lists(st.integers(1, 2**63 - 1), max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    following=ids_strategy,
    follower=ids_strategy,
    parts=st.integers(1, 3),
    variant=st.fixed_dictionaries(
        {
            "crlf": st.booleans(),
            "bom": st.booleans(),
            "manifest": st.booleans(),
            "streamed": st.booleans(),
            "zip64": st.booleans(),
            "macosx": st.booleans(),
            "nested": st.sampled_from([None, "twitter-2024-11-01-0a1b2c"]),
            "compression": st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED]),
        }
    ),
    chunk=st.sampled_from([1, 7, 4096, 1 << 17]),
)
def test_generated_graphs_round_trip_exactly(
    following: list[int], follower: list[int], parts: int, variant: dict, chunk: int
) -> None:
    spec = ArchiveSpec(following=following, follower=follower, parts=parts, tweets_bytes=3000,
                       **variant)  # fmt: skip
    parsed = parse_archive(chunked(build_archive(spec), chunk))
    assert list(parsed.following.ids) == sorted(set(following))
    assert list(parsed.follower.ids) == sorted(set(follower))
    summary = parsed.summary()
    assert summary == {
        "owner": {"account_id": spec.owner_id, "username": spec.username},
        "following_count": len(set(following)),
        "follower_count": len(set(follower)),
        "following_sha256": reference_sha256(following),
        "follower_sha256": reference_sha256(follower),
    }


def test_large_graph_with_noise_round_trips() -> None:
    rng = random.Random(7)
    spec = ArchiveSpec(following=random_ids(5_000, rng), follower=random_ids(60_000, rng),
                       parts=2, tweets_bytes=3 << 20, media_files=20, nested="top",
                       macosx=True)  # fmt: skip
    parsed = parse_archive(chunked(build_archive(spec), 128 * 1024))
    assert parsed.follower.sha256() == reference_sha256(spec.follower)
    assert parsed.following.sha256() == reference_sha256(spec.following)


def test_minified_and_reordered_json_takes_the_slow_path() -> None:
    records = [{"follower": {"userLink": "x", "accountId": str(i)}} for i in (5, 2**62, 5, 9)]
    text = "window.YTD.follower.part0 = " + json.dumps(records, separators=(",", ":")) + ";"
    spec = ArchiveSpec(following=[3], manifest=False)
    data = build_archive(spec)
    members = good_members()
    members[1] = deflated_entry("data/follower.js", text.encode())
    parsed = parse_archive(chunked(raw_zip(members), 5))
    assert list(parsed.follower.ids) == [5, 9, 2**62]
    assert data  # the generated archive itself parses too
    assert list(parse_archive([data]).following.ids) == [3]


@pytest.mark.parametrize("chunk", [997, 1 << 16])
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_archive_gets_its_stable_reason(case: str, chunk: int) -> None:
    data, code = CORPUS[case]
    with pytest.raises(ArchiveRejectedError) as info:
        parse_archive(chunked(data, chunk), Limits(max_entries=HOSTILE_MAX_ENTRIES))
    assert info.value.code == code, info.value.message
    assert info.value.message and "\n" not in info.value.message


def test_total_inflated_bytes_are_capped() -> None:
    spec = ArchiveSpec(following=list(range(1, 3000)), follower=list(range(1, 3000)))
    limits = Limits(max_total_bytes=200_000)
    with pytest.raises(ArchiveRejectedError) as info:
        parse_archive([build_archive(spec)], limits)
    assert info.value.code == Reason.ZIP_BOMB


def test_archive_size_is_capped_while_streaming() -> None:
    data = build_archive(ArchiveSpec(following=[1], follower=[2], tweets_bytes=100_000))
    with pytest.raises(ArchiveRejectedError) as info:
        parse_archive(chunked(data, 1000), Limits(max_archive_bytes=len(data) - 1))
    assert info.value.code == Reason.TOO_LARGE


def test_zip64_end_record_with_more_than_65535_entries() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(66_000):
            zf.writestr(f"assets/{i}", b"")
        zf.writestr("data/account.js", account_text(ArchiveSpec()))
        zf.writestr("data/follower.js", "".join(graph_lines("follower", 0, [5, 2**62])))
    data = buf.getvalue()
    assert b"PK\x06\x06" in data  # the zip64 end of central directory record
    assert list(parse_archive(chunked(data, 1 << 16)).follower.ids) == [5, 2**62]
