"""The graph-part scanner against Python's own JSON parser, on canonical and mutated parts.

The fast paths (C and numpy) accept a run of records only when it is byte for byte what X
writes; every mutation of one byte must either leave the same result as `json.loads` or be
refused, never give other ids than the JSON says. Each case runs with both fast paths.
"""

from __future__ import annotations

import json
import random
import re
from contextlib import nullcontext
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hqx.errors import ArchiveRejectedError
from services.ingest import fastpath
from services.ingest.limits import Limits
from services.ingest.ytd import ID_RE, MAX_ID, PREFIX_RE, GraphScanner
from tests.factories.archives import graph_lines

KIND = "follower"


IMPLS = ("c", "numpy")


def scan(data: bytes, chunk: int, impl: str) -> list[int] | None:
    """The ids the scanner reads with one fast path, or None when it refuses the part."""
    pure = mock.patch.object(fastpath, "_native", lambda: None)
    with pure if impl == "numpy" else nullcontext():
        s = GraphScanner("data/follower.js", Limits())
        try:
            for i in range(0, len(data), chunk):
                s.feed(data[i : i + chunk])
            s.finish()
        except ArchiveRejectedError:
            return None
    return list(s.ids)


def test_the_c_fast_path_is_built() -> None:
    assert fastpath.native_loaded(), "make install builds services/ingest/_ytdscan.so"


def reference(data: bytes) -> list[int] | None:
    """The ids as `json.loads` reads the part, or None where the part is not a valid one."""
    m = PREFIX_RE.match(data)
    if m is None or m.group(1) != KIND.encode():
        return None
    body = data[m.end() :].strip(b" \t\r\n").removesuffix(b";")
    try:
        records = json.loads(body)
    except ValueError:
        return None
    if not isinstance(records, list):
        return None
    ids = []
    for r in records:
        inner = r.get(KIND) if isinstance(r, dict) else None
        value = inner.get("accountId") if isinstance(inner, dict) else None
        if not isinstance(value, str) or not ID_RE.match(value) or int(value) > MAX_ID:
            return None
        ids.append(int(value))
    return ids


def canonical(ids: list[int], nl: str) -> bytes:
    return "".join(graph_lines(KIND, 0, ids, nl)).encode()


ids_strategy = st.lists(st.integers(1, MAX_ID), min_size=1, max_size=300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=ids_strategy, crlf=st.booleans(), chunk=st.sampled_from([1, 13, 4096, 1 << 20]))
def test_canonical_parts_read_exactly(ids: list[int], crlf: bool, chunk: int) -> None:
    data = canonical(ids, "\r\n" if crlf else "\n")
    for impl in IMPLS:
        assert scan(data, chunk, impl) == ids == reference(data)


MUTATION_BYTES = b'0123456789",{}: \n=;[]\\x'


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.lists(st.integers(1, MAX_ID), min_size=2, max_size=40),
    where=st.floats(0, 1, exclude_max=True),
    how=st.sampled_from(["insert", "replace", "delete"]),
    byte=st.sampled_from(list(MUTATION_BYTES)),
    chunk=st.sampled_from([7, 1 << 20]),
)
def test_one_mutated_byte_is_read_as_json_reads_it_or_refused(
    ids: list[int], where: float, how: str, byte: int, chunk: int
) -> None:
    data = bytearray(canonical(ids, "\n"))
    at = int(where * len(data))
    if how == "insert":
        data[at:at] = bytes([byte])
    elif how == "replace":
        data[at] = byte
    else:
        del data[at]
    expected = reference(bytes(data))
    for impl in IMPLS:
        assert scan(bytes(data), chunk, impl) == expected, impl


@pytest.mark.parametrize(
    ("pattern", "replacement"),
    [
        (rb'"accountId" : "(\d+)"', rb'"accountId" : "1\1"'),  # the two copies disagree
        (rb'user_id=(\d+)"', rb'user_id=0\1"'),  # leading zero in the link only
        (rb'"follower" : \{', rb'"follower" : 7{'),  # a digit outside the ids
        (rb'"accountId" : "(\d+)"', rb'"accountId" : "0\1"'),  # a leading zero
    ],
)
def test_digits_out_of_place_never_pass_the_fast_path(pattern: bytes, replacement: bytes) -> None:
    ids = [random.Random(i).randrange(1, MAX_ID) for i in range(2000)]
    data = canonical(ids, "\n")
    spots = [m.start() for m in re.finditer(pattern, data)]
    cut = spots[1234]
    mutated = data[:cut] + re.sub(pattern, replacement, data[cut:], count=1)
    expected = reference(mutated)
    for impl in IMPLS:
        assert scan(mutated, 1 << 20, impl) == expected, impl


@pytest.mark.parametrize("impl", IMPLS)
def test_fast_paths_read_whole_runs_and_stop_at_the_first_odd_record(impl: str) -> None:
    ids = [random.Random(i).randrange(1, MAX_ID) for i in range(3000)]
    data = canonical(ids, "\n")
    start, shape = data.index(b"[") + 1, fastpath.Shape.of(KIND, b"\n")
    pure = mock.patch.object(fastpath, "_native", lambda: None)
    with pure if impl == "numpy" else nullcontext():
        end, got = fastpath.read(data, start, shape)
        assert list(got) == ids[:-1]  # the last record has no comma after it: the slow path's
        assert data[end:].startswith(b"\n  {") and data.count(b"},", end) == 0
        key = b'"accountId" : "'
        parts = data.split(key)
        odd = key.join(parts[:1500]) + b'"accountId":"' + key.join(parts[1500:])  # record 1500
        end, got = fastpath.read(odd, start, shape)
    if impl == "c":
        assert list(got) == ids[:1499]  # C stops exactly there
    else:
        assert list(got) in (ids[:1499], [])  # numpy may leave the whole run to the slow path
