"""Parse an X archive from a stream of zip bytes into its owner and follow graph.

One pass, bounded memory: only `data/manifest.js`, `data/account.js` and the follower /
following parts are inflated; everything else is skipped (without inflating when the zip says
how long it is). Errors are `ArchiveRejectedError` with a stable reason code.

Verdict order is stable whatever the member order: a problem found in a member's content is
held while the rest of the zip is walked without inflating, so that a structural problem of the
zip itself (overlapping entries, symlink, encrypted member, bad central directory) wins.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from hqx.errors import ArchiveRejectedError, Reason
from services.ingest.bytesource import ByteSource
from services.ingest.limits import Limits
from services.ingest.manifest import Manifest, Owner, parse_account, parse_manifest
from services.ingest.ytd import GRAPH_KINDS, GraphScanner, sniff
from services.ingest.zipnames import logical_path
from services.ingest.zipstream import Member, ZipReader

MANIFEST = "data/manifest.js"
ACCOUNT = "data/account.js"
_PEEK = 256
# NOTE: named like a graph part: parsed even when its prefix is broken, so it is refused (a
# misnamed part is still found by its `window.YTD.follower.` prefix).
GRAPH_NAME = re.compile(r"^data/follow(?:er|ing)(?:-part[0-9]+)?\.js$")


@dataclass
class Graph:
    """Sorted, de-duplicated account ids of one direction."""

    ids: array = field(default_factory=lambda: array("q"))

    def __len__(self) -> int:
        return len(self.ids)

    def sha256(self) -> str:
        """sha256 of the ascending ids as decimal strings joined by newlines."""
        h = hashlib.sha256()
        step = 100_000
        for i in range(0, len(self.ids), step):
            if i:
                h.update(b"\n")
            h.update("\n".join(map(str, self.ids[i : i + step])).encode())
        return h.hexdigest()


@dataclass
class ParsedArchive:
    owner: Owner
    following: Graph
    follower: Graph
    parts: list[tuple[str, str, int]]  # (file, kind, records) of the parts used
    read_bytes: int = 0  # of the zip
    inflated_bytes: int = 0  # of the members parsed

    def summary(self) -> dict[str, object]:
        """The `hqx archive inspect --json` document."""
        return {
            "owner": {"account_id": self.owner.account_id, "username": self.owner.username or ""},
            "following_count": len(self.following),
            "follower_count": len(self.follower),
            "following_sha256": self.following.sha256(),
            "follower_sha256": self.follower.sha256(),
        }


@dataclass
class _Seen:
    crc: int | None
    usize: int | None


class _Walk:
    """State of one pass over the members."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.scanned: dict[str, GraphScanner] = {}
        self.manifest: Manifest | None = None
        self.account: Owner | None = None
        self.names: dict[str, _Seen] = {}
        self.held: ArchiveRejectedError | None = None

    def member(self, m: Member) -> None:
        path = logical_path(m.name)
        key = path or m.name
        wanted = path is not None and path.startswith("data/") and path.count("/") == 1
        if self.held is None and wanted and key not in self.names:
            try:
                self._read(m, key)
            except ArchiveRejectedError as e:
                if not m.can_skip_raw:
                    raise
                self.held = e
        m.skip()
        seen = _Seen(m.entry.crc, m.entry.usize)
        if self.names.setdefault(key, seen) != seen:
            raise ArchiveRejectedError(
                Reason.DUPLICATE_ENTRY, f"{key} appears twice with different content"
            )

    def _read(self, m: Member, path: str) -> None:
        chunks = m.chunks()
        head = b""
        for chunk in chunks:
            head += chunk
            if len(head) >= _PEEK:
                break
        kind = sniff(head)
        if (kind is not None and kind[0] in GRAPH_KINDS) or GRAPH_NAME.match(path):
            scanner = GraphScanner(path, self.limits)
            scanner.feed(head)
            for chunk in chunks:
                scanner.feed(chunk)
            scanner.finish()
            self.scanned[path] = scanner
        elif path in (MANIFEST, ACCOUNT):
            data = bytearray(head)
            for chunk in chunks:
                data += chunk
                if len(data) > self.limits.max_small_file_bytes:
                    raise ArchiveRejectedError(Reason.MANIFEST_INVALID, f"{path} is too large")
            if path == MANIFEST:
                self.manifest = parse_manifest(bytes(data))
            else:
                self.account = parse_account(bytes(data))
        else:
            m.skip()


def parse_archive(chunks: Iterable[bytes], limits: Limits | None = None) -> ParsedArchive:
    """Stream the zip bytes once; returns the parsed archive or raises ArchiveRejectedError."""
    limits = limits or Limits()
    source = ByteSource(chunks, limits.max_archive_bytes)
    reader = ZipReader(source, limits)
    walk = _Walk(limits)
    for member in reader.members():
        walk.member(member)
    reader.finish()
    if walk.held is not None:
        raise walk.held
    parsed = _assemble(walk)
    parsed.read_bytes, parsed.inflated_bytes = source.offset, reader.inflated
    return parsed


def _assemble(walk: _Walk) -> ParsedArchive:
    owner = _owner(walk.manifest, walk.account)
    described = walk.manifest.parts if walk.manifest else {}
    graphs: dict[str, Graph] = {}
    used: list[tuple[str, str, int]] = []
    found_any = False
    for kind in GRAPH_KINDS:
        if kind in described:
            scanners = []
            for part in described[kind]:
                s = walk.scanned.get(part.file_name)
                if s is None:
                    raise ArchiveRejectedError(
                        Reason.MANIFEST_INVALID,
                        f"data/manifest.js lists {part.file_name}, which is not in the archive",
                    )
                if s.kind != kind or s.part != part.part:
                    raise ArchiveRejectedError(
                        Reason.MANIFEST_INVALID,
                        f"{part.file_name} holds {s.kind} part {s.part}, not {kind} {part.part}",
                    )
                if s.records != part.count:
                    raise ArchiveRejectedError(
                        Reason.COUNT_MISMATCH,
                        f"{part.file_name} has {s.records} records, the manifest says {part.count}",
                    )
                scanners.append(s)
            found_any = True
        else:
            scanners = [s for _, s in sorted(walk.scanned.items()) if s.kind == kind]
            found_any = found_any or bool(scanners)
        graphs[kind] = _merge(scanners)
        used += [(s.name, kind, s.records) for s in scanners]
    if not found_any:
        raise ArchiveRejectedError(
            Reason.GRAPH_MISSING, "the archive has no data/follower.js nor data/following.js"
        )
    return ParsedArchive(owner, graphs["following"], graphs["follower"], used)


def _owner(manifest: Manifest | None, account: Owner | None) -> Owner:
    from_manifest = manifest.owner if manifest else None
    if from_manifest and account and from_manifest.account_id != account.account_id:
        raise ArchiveRejectedError(
            Reason.MANIFEST_INVALID, "data/manifest.js and data/account.js name different owners"
        )
    owner = from_manifest or account
    if owner is None:
        raise ArchiveRejectedError(
            Reason.OWNER_MISSING, "neither data/manifest.js nor data/account.js names the owner"
        )
    if owner.username is None and account is not None:
        owner = Owner(owner.account_id, account.username)
    return owner


def _merge(scanners: list[GraphScanner]) -> Graph:
    """All parts of one direction, sorted, duplicates removed: 8 bytes per id, never boxed."""
    total = array("q")
    for s in scanners:
        total.extend(s.ids)
        s.ids = array("q")
    if not total:
        return Graph()
    # NOTE: numpy sorts 2 M int64 in C; sorted() would box every id (the bulk of parse time).
    ids = np.sort(np.frombuffer(total, dtype=np.int64))
    del total
    if len(ids) > 1 and bool((ids[1:] == ids[:-1]).any()):
        ids = ids[np.concatenate(([True], ids[1:] != ids[:-1]))]
    return Graph(array("q", ids.tobytes()))
