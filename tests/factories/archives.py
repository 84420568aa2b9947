"""Synthetic X archives, realistic or hostile, written as a stream (never built whole in memory).

`write_archive(spec, out)` writes what X gives people: pretty-printed `window.YTD.*` parts, a
manifest with numbers as strings, multi-part graph files, ids beyond 2^53, tweets and media
noise, optionally nested under a top folder with `__MACOSX/`, CRLF / BOM variants, the old
manifest-less format, zip64 headers, stored and deflated members, data descriptors (a zip
written to a pipe, as browsers and Macs do). `hostile_corpus()` builds every hostile case of
issue 4 with the reason code it must get.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from hqx.errors import Reason

BIG = 2**53 + 1  # ids beyond float precision start here


def random_ids(n: int, rng: random.Random, *, big_share: float = 0.5) -> list[int]:
    """Distinct realistic ids: old short ones and 19-digit snowflakes beyond 2^53."""
    out: set[int] = set()
    while len(out) < n:
        if rng.random() < big_share:
            out.add(rng.randrange(BIG, 2**63 - 1))
        else:
            out.add(rng.randrange(1, 10**10))
    return list(out)


@dataclass
class ArchiveSpec:
    owner_id: str = "1234567890123456789"
    username: str = "alice_example"
    following: list[int] = field(default_factory=list)
    follower: list[int] = field(default_factory=list)
    parts: int = 1  # parts per graph direction
    manifest: bool = True
    account: bool = True
    tweets_bytes: int = 20_000
    media_files: int = 2
    nested: str | None = None  # top folder name ("twitter-2024-11-01-abc")
    macosx: bool = False
    crlf: bool = False
    bom: bool = False
    zip64: bool = False
    streamed: bool = False  # written to a pipe: data descriptors, sizes after the data
    compression: int = zipfile.ZIP_DEFLATED
    count_override: dict[str, int] = field(default_factory=dict)  # file name -> manifest count
    seed: int = 0


def record(kind: str, account_id: int | str, nl: str = "\n") -> str:
    return (
        f'  {{{nl}    "{kind}" : {{{nl}      "accountId" : "{account_id}",{nl}'
        f'      "userLink" : "https://twitter.com/intent/user?user_id={account_id}"{nl}'
        f"    }}{nl}  }}"
    )


def part_name(kind: str, i: int) -> str:
    return f"data/{kind}.js" if i == 0 else f"data/{kind}-part{i}.js"


def split_parts(ids: list[int], n: int) -> list[list[int]]:
    size = -(-len(ids) // n) if ids else 0
    return [ids[i * size : (i + 1) * size] for i in range(n)]


def graph_lines(kind: str, part: int, ids: list[int], nl: str = "\n") -> Iterator[str]:
    """The text of one part, in pieces (a 2 M-record part is never one string)."""
    yield f"window.YTD.{kind}.part{part} = ["
    if not ids:
        yield " ]"
        return
    for i in range(0, len(ids), 10_000):
        batch = ids[i : i + 10_000]
        yield ("," if i else "") + nl + f",{nl}".join(record(kind, x, nl) for x in batch)
    yield f"{nl}]"


def manifest_text(spec: ArchiveSpec, files: dict[str, list[tuple[str, int, int]]]) -> str:
    types: dict[str, object] = {
        "account": {"files": [{"fileName": "data/account.js", "globalName": "YTD.account.part0",
                               "count": "1"}]},
        "tweets": {"files": [{"fileName": "data/tweets.js", "globalName": "YTD.tweets.part0",
                              "count": "42"}], "mediaDirectory": "data/tweets_media"},
    }  # fmt: skip
    for kind, entries in files.items():
        types[kind] = {
            "files": [
                {
                    "fileName": name,
                    "globalName": f"YTD.{kind}.part{part}",
                    "count": str(spec.count_override.get(name, count)),
                }
                for name, part, count in entries
            ]
        }
    doc = {
        "userInfo": {"accountId": spec.owner_id, "userName": spec.username,
                     "displayName": "Alice Example"},
        "archiveInfo": {"sizeBytes": "123456789", "generationDate": "2024-11-01T10:00:00.000Z",
                        "isPartialArchive": False, "maxPartSizeBytes": "53687091200"},
        "readmeInfo": {"fileName": "data/README.txt", "directory": "data/",
                       "name": "README.txt"},
        "dataTypes": types,
    }  # fmt: skip
    return "window.__THAR_CONFIG = " + json.dumps(doc, indent=2, separators=(",", " : "))


def account_text(spec: ArchiveSpec) -> str:
    doc = [{"account": {"email": "alice@example.org", "createdVia": "web",
                        "username": spec.username, "accountId": spec.owner_id,
                        "createdAt": "2009-03-01T10:00:00.000Z",
                        "accountDisplayName": "Alice Example"}}]  # fmt: skip
    return "window.YTD.account.part0 = " + json.dumps(doc, indent=2, separators=(",", " : "))


def _tweet_block(rng: random.Random, size: int) -> str:
    words = ["exodus", "bluesky", "mastodon", "hello", "world", "follow", "graph", "café", "🦋"]
    out, n = [], 0
    while n < size:
        text = " ".join(rng.choice(words) for _ in range(rng.randrange(5, 40)))
        tid = rng.randrange(BIG, 2**63 - 1)
        fav = rng.randrange(100)
        t = (f'  {{\n    "tweet" : {{\n      "id_str" : "{tid}",\n      "full_text" : '
             f'{json.dumps(text)},\n      "favorite_count" : "{fav}"\n    }}\n  }}')  # fmt: skip
        out.append(t)
        n += len(t) + 2
    return ",\n".join(out)


class _Pipe(io.RawIOBase):
    """An unseekable sink: zipfile then writes data descriptors, as streaming zippers do."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self._out.write(b)
        return len(b)

    def tell(self) -> int:
        raise OSError("unseekable")


def write_archive(spec: ArchiveSpec, out: BinaryIO) -> None:
    """Write the archive described by `spec` to `out`, streaming every large member."""
    rng = random.Random(spec.seed)
    nl = "\r\n" if spec.crlf else "\n"
    top = f"{spec.nested}/" if spec.nested else ""
    sink: BinaryIO = _Pipe(out) if spec.streamed else out  # type: ignore[assignment]
    with zipfile.ZipFile(sink, "w", compression=spec.compression) as zf:

        def put(name: str, pieces: Iterator[str] | list[str], level: int = 6,
                method: int | None = None) -> None:  # fmt: skip
            info = zipfile.ZipInfo(top + name, date_time=(2024, 11, 1, 10, 0, 0))
            info.compress_type = spec.compression if method is None else method
            if spec.streamed and info.compress_type == zipfile.ZIP_STORED:
                info.compress_type = zipfile.ZIP_DEFLATED
            info._compresslevel = level  # type: ignore[attr-defined]
            with zf.open(info, "w", force_zip64=spec.zip64) as f:
                first = True
                for piece in pieces:
                    data = piece.encode()
                    if first and spec.bom:
                        data = b"\xef\xbb\xbf" + data
                    first = False
                    f.write(data)

        put("Your archive.html", ["<!doctype html><title>Your archive</title>"])
        files: dict[str, list[tuple[str, int, int]]] = {}
        for kind, ids in (("following", spec.following), ("follower", spec.follower)):
            files[kind] = []
            for i, chunk in enumerate(split_parts(ids, spec.parts)):
                name = part_name(kind, i)
                put(name, graph_lines(kind, i, chunk, nl))
                files[kind].append((name, i, len(chunk)))
        if spec.account:
            put("data/account.js", [account_text(spec).replace("\n", nl)])
        block = _tweet_block(rng, min(spec.tweets_bytes, 1 << 20))
        reps = max(1, spec.tweets_bytes // max(len(block), 1))
        tweets = ["window.YTD.tweets.part0 = [\n", *([block + ",\n"] * (reps - 1)), block, "\n]"]
        put("data/tweets.js", tweets, level=1)
        for i in range(spec.media_files):
            noise = rng.randbytes(2000).hex()
            put(f"data/tweets_media/{i}-media.jpg", [noise], method=zipfile.ZIP_STORED)
        put("assets/js/app.js", ["console.log('archive');" * 50])
        if spec.manifest:  # X writes it last
            put("data/manifest.js", [manifest_text(spec, files).replace("\n", nl)])
        if spec.macosx:
            put(f"__MACOSX/{top}data/._follower.js", ["\x00\x05\x16\x07 resource fork"])


def build_archive(spec: ArchiveSpec) -> bytes:
    buf = io.BytesIO()
    write_archive(spec, buf)
    return buf.getvalue()


# --- raw zips for what zipfile refuses to write ------------------------------------------


@dataclass
class RawEntry:
    name: bytes
    payload: bytes  # the bytes stored after the local header (already compressed)
    usize: int
    crc: int
    method: int = 0
    flags: int = 0
    made_by: int = 20
    external_attr: int = 0
    local_extra: bytes = b""
    central_extra: bytes = b""
    usize_field: int | None = None  # what the headers say, if not the truth
    csize_field: int | None = None


def raw_zip(entries: list[RawEntry], *, central: list[tuple[int, int]] | None = None,
            trailing: bytes = b"") -> bytes:  # fmt: skip
    """A zip from explicit headers. `central` lists (entry index, offset) for the directory
    (default: each entry at its own offset), so entries can be made to overlap."""
    out = bytearray()
    offsets = []
    for e in entries:
        offsets.append(len(out))
        csize = len(e.payload) if e.csize_field is None else e.csize_field
        usize = e.usize if e.usize_field is None else e.usize_field
        out += b"PK\x03\x04" + struct.pack(
            "<HHHHHIIIHH", 20, e.flags, e.method, 0, 0x21, e.crc, csize, usize,
            len(e.name), len(e.local_extra),
        ) + e.name + e.local_extra + e.payload  # fmt: skip
    cd_offset = len(out)
    rows = central if central is not None else [(i, offsets[i]) for i in range(len(entries))]
    for i, offset in rows:
        e = entries[i]
        csize = len(e.payload) if e.csize_field is None else e.csize_field
        usize = e.usize if e.usize_field is None else e.usize_field
        out += b"PK\x01\x02" + struct.pack(
            "<HHHHHHIIIHHHHHII", e.made_by, 20, e.flags, e.method, 0, 0x21, e.crc, csize, usize,
            len(e.name), len(e.central_extra), 0, 0, 0, e.external_attr, offset,
        ) + e.name + e.central_extra  # fmt: skip
    cd_size = len(out) - cd_offset
    out += b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(rows), len(rows), cd_size,
                                        cd_offset, 0)  # fmt: skip
    return bytes(out) + trailing


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def stored_entry(name: str, data: bytes, **kw: object) -> RawEntry:
    return RawEntry(name.encode(), data, len(data), zlib.crc32(data), **kw)  # type: ignore[arg-type]


def deflated_entry(name: str, data: bytes, **kw: object) -> RawEntry:
    return RawEntry(name.encode(), deflate(data), len(data), zlib.crc32(data), method=8, **kw)  # type: ignore[arg-type]


# --- the hostile corpus --------------------------------------------------------------------

OWNER = "1234567890123456789"


def good_members(follower: str | None = None, following: str | None = None) -> list[RawEntry]:
    """A minimal valid archive as raw entries, with optional replacement graph texts."""
    fol = following if following is not None else "".join(graph_lines("following", 0, [12, 13]))
    fer = follower if follower is not None else "".join(graph_lines("follower", 0, [2**60, 7]))
    spec = ArchiveSpec(owner_id=OWNER)
    return [
        deflated_entry("data/following.js", fol.encode()),
        deflated_entry("data/follower.js", fer.encode()),
        deflated_entry("data/account.js", account_text(spec).encode()),
    ]


def _with_graph(follower_text: str) -> bytes:
    return raw_zip(good_members(follower=follower_text))


def _zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data, compression)
    return buf.getvalue()


def _manifest_archive(files: dict[str, list[tuple[str, int, int]]], **graph: list[int]) -> bytes:
    spec = ArchiveSpec(owner_id=OWNER)
    members = {
        "data/manifest.js": manifest_text(spec, files).encode(),
        "data/account.js": account_text(spec).encode(),
    }
    for kind, ids in graph.items():
        members[f"data/{kind}.js"] = "".join(graph_lines(kind, 0, ids)).encode()
    return _zip(members)


def _bomb_member() -> bytes:
    """data/follower.js whose body is 64 MiB of spaces: ~1000:1, beyond the ratio cap."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = b"window.YTD.follower.part0 = ["
    body = c.compress(head) + b"".join(c.compress(b" " * (1 << 20)) for _ in range(64))
    body += c.compress(b"]") + c.flush()
    usize = len(head) + (64 << 20) + 1
    crc = zlib.crc32(b" " * (1 << 20), zlib.crc32(head))
    for _ in range(63):
        crc = zlib.crc32(b" " * (1 << 20), crc)
    crc = zlib.crc32(b"]", crc)
    entry = RawEntry(b"data/follower.js", body, usize, crc, method=8)
    return raw_zip([*good_members()[:1], entry, good_members()[2]])


def _declared_bomb() -> bytes:
    """A member whose zip64 header declares 3 TB once inflated (we refuse before inflating)."""
    data = deflate(b"window.YTD.follower.part0 = [ ]")
    huge = 3 * 2**40
    extra = struct.pack("<HHQQ", 1, 16, huge, len(data))
    e = RawEntry(b"data/follower.js", data, huge, 0, method=8, local_extra=extra,
                 central_extra=extra, usize_field=0xFFFFFFFF, csize_field=0xFFFFFFFF)  # fmt: skip
    return raw_zip([e])


def _overlap_same_offset() -> bytes:
    members = good_members()
    return raw_zip(members, central=[(0, 0), (1, 0), (2, 0)])


def _overlap_nested_header() -> bytes:
    """Fifield's trick: entry A's stored data quotes entry B's local header and data."""
    inner = stored_entry("data/follower.js", b"window.YTD.follower.part0 = [ ]")
    inner_bytes = raw_zip([inner])
    inner_local = inner_bytes[: inner_bytes.index(b"PK\x01\x02")]
    outer = stored_entry("kernel.bin", inner_local)
    return raw_zip([outer, inner], central=[(0, 0), (1, 30 + len(outer.name))])


def _encrypted() -> bytes:
    members = good_members()
    members[1].flags |= 0x01
    return raw_zip(members)


def _symlink() -> bytes:
    members = good_members()
    link = stored_entry("data/follower-part1.js", b"../../../../etc/passwd",
                        made_by=(3 << 8) | 20, external_attr=(0o120777 << 16))  # fmt: skip
    return raw_zip([*members, link])


def _truncated(cut_in: str) -> bytes:
    data = build_archive(ArchiveSpec(following=list(range(1, 400)), follower=list(range(5, 900))))
    if cut_in == "member":
        start = data.index(b"data/follower.js")
        return data[: start + 2000]
    cd = data.index(b"PK\x01\x02")
    return data[: cd + (len(data) - cd) // 2]


def _duplicate() -> bytes:
    members = good_members()
    other = deflated_entry("data/follower.js", "".join(graph_lines("follower", 0, [99])).encode())
    return raw_zip([*members, other])


def _too_many(n: int) -> bytes:
    return _zip({f"assets/{i}.txt": b"x" for i in range(n)} | {
        "data/account.js": account_text(ArchiveSpec(owner_id=OWNER)).encode()})  # fmt: skip


def _crc_mismatch() -> bytes:
    members = good_members()
    members[0].crc ^= 1
    return raw_zip(members)


def _records(kind: str, *ids: str) -> str:
    body = ",\n".join(record(kind, i) for i in ids)
    return f"window.YTD.{kind}.part0 = [\n{body}\n]"


HOSTILE_MAX_ENTRIES = 100


def hostile_corpus() -> dict[str, tuple[bytes, Reason]]:
    """Every hostile case of issue 4 -> (archive bytes, the reason code it must get).

    Meant to be parsed with `Limits(max_entries=HOSTILE_MAX_ENTRIES)`, other limits default.
    """
    fer = record("follower", 7)
    cases: dict[str, tuple[bytes, Reason]] = {
        "not_a_zip": (b"%PDF-1.7 this is not a zip\n" * 20, Reason.NOT_A_ZIP),
        "empty_file": (b"", Reason.EMPTY_ARCHIVE),
        "empty_zip": (_zip({}), Reason.EMPTY_ARCHIVE),
        "truncated_in_member": (_truncated("member"), Reason.TRUNCATED),
        "truncated_in_central_directory": (_truncated("cd"), Reason.TRUNCATED),
        "zip_bomb_ratio": (_bomb_member(), Reason.ZIP_BOMB),
        "zip_bomb_declared_size": (_declared_bomb(), Reason.ZIP_BOMB),
        "overlapping_same_offset": (_overlap_same_offset(), Reason.OVERLAPPING_ENTRIES),
        "overlapping_quoted_header": (_overlap_nested_header(), Reason.OVERLAPPING_ENTRIES),
        "path_traversal": (_zip({"data/../../evil.js": b"x"}), Reason.UNSAFE_PATH),
        "absolute_name": (raw_zip([stored_entry("/etc/passwd", b"x")]), Reason.UNSAFE_PATH),
        "windows_drive_name": (raw_zip([stored_entry("C:\\evil.js", b"x")]), Reason.UNSAFE_PATH),
        "symlink": (_symlink(), Reason.SYMLINK),
        "encrypted": (_encrypted(), Reason.ENCRYPTED),
        "too_many_entries": (_too_many(HOSTILE_MAX_ENTRIES + 5), Reason.TOO_MANY_ENTRIES),
        "duplicate_different_content": (_duplicate(), Reason.DUPLICATE_ENTRY),
        "prefix_missing": (_with_graph(f"[\n{fer}\n]"), Reason.MALFORMED_JS),
        "json_cut": (_with_graph(f"window.YTD.follower.part0 = [\n{fer},\n  {{\n    \"fol"),
                     Reason.MALFORMED_JS),
        "trailing_garbage": (_with_graph(f"window.YTD.follower.part0 = [\n{fer}\n]\nalert(1)"),
                             Reason.MALFORMED_JS),
        "id_exponent": (_with_graph(_records("follower", "1e9")), Reason.INVALID_ACCOUNT_ID),
        "id_negative": (_with_graph(_records("follower", "-5")), Reason.INVALID_ACCOUNT_ID),
        "id_trailing_letters": (_with_graph(_records("follower", "12abc")),
                                Reason.INVALID_ACCOUNT_ID),
        "id_beyond_bigint": (_with_graph(_records("follower", str(2**63))),
                             Reason.INVALID_ACCOUNT_ID),
        "id_twenty_digits": (_with_graph(_records("follower", "1" * 20)),
                             Reason.INVALID_ACCOUNT_ID),
        "id_leading_zero": (_with_graph(_records("follower", "0123")), Reason.INVALID_ACCOUNT_ID),
        "id_as_number": (_with_graph(
            'window.YTD.follower.part0 = [ { "follower" : { "accountId" : 123 } } ]'),
            Reason.INVALID_ACCOUNT_ID),
        "huge_single_line": (_with_graph(
            'window.YTD.follower.part0 = [ { "follower" : { "accountId" : "7", "userLink" : "'
            + "x" * (2 << 20) + '" } } ]'), Reason.MALFORMED_JS),
        "deeply_nested": (_with_graph("window.YTD.follower.part0 = [" + "[" * 50_000
                                      + "]" * 50_000 + "]"), Reason.MALFORMED_JS),
        "manifest_outside_data": (_manifest_archive(
            {"follower": [("../follower.js", 0, 1)], "following": []}, follower=[7]),
            Reason.MANIFEST_INVALID),
        "manifest_other_folder": (_manifest_archive(
            {"follower": [("assets/follower.js", 0, 1)], "following": []}, follower=[7]),
            Reason.MANIFEST_INVALID),
        "manifest_missing_file": (_manifest_archive(
            {"follower": [("data/follower.js", 0, 1), ("data/follower-part1.js", 1, 1)],
             "following": []}, follower=[7]), Reason.MANIFEST_INVALID),
        "manifest_count_mismatch": (_manifest_archive(
            {"follower": [("data/follower.js", 0, 2)], "following": [("data/following.js", 0, 1)]},
            follower=[7], following=[8]), Reason.COUNT_MISMATCH),
        "manifest_not_json": (_zip({"data/manifest.js": b"window.__THAR_CONFIG = {oops",
                                    "data/follower.js": _records("follower", "7").encode()}),
                              Reason.MANIFEST_INVALID),
        "graph_missing": (_manifest_archive({}), Reason.GRAPH_MISSING),
        "owner_missing": (_zip({"data/follower.js": _records("follower", "7").encode()}),
                          Reason.OWNER_MISSING),
        "crc_mismatch": (_crc_mismatch(), Reason.ZIP_CORRUPT),
        "trailing_data_after_zip": (raw_zip(good_members(), trailing=b"PK\x03\x04 more"),
                                    Reason.ZIP_CORRUPT),
        "bzip2_member": (_zip({"data/follower.js": b"x"}, compression=zipfile.ZIP_BZIP2),
                         Reason.UNSUPPORTED_ZIP),
    }  # fmt: skip
    return cases
