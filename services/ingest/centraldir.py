"""The end of a zip: central directory and end records, cross-checked with the local headers.

Read in stream order after the last member, so no seek is needed: this is where truncation of
the directory, overlapping entries, hidden entries and symlinks (only the directory carries the
external attributes) are caught.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hqx.errors import ArchiveRejectedError, Reason
from services.ingest.bytesource import ByteSource
from services.ingest.limits import Limits
from services.ingest.zipnames import check_name, decode_name

if TYPE_CHECKING:
    from services.ingest.zipstream import LocalEntry

CENTRAL = b"PK\x01\x02"
EOCD = b"PK\x05\x06"
EOCD64 = b"PK\x06\x06"
EOCD64_LOCATOR = b"PK\x06\x07"
_CENTRAL = struct.Struct("<HHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<HHHHIIH")
_EOCD64 = struct.Struct("<QHHIIQQQQ")
_U32 = 0xFFFFFFFF
S_IFMT, S_IFLNK = 0o170000, 0o120000


def reject(code: Reason, message: str) -> ArchiveRejectedError:
    return ArchiveRejectedError(code, message)


def zip64_values(extra: bytes, wanted: list[bool]) -> list[int | None]:
    """Values of the zip64 extra field (0x0001), in order, for the fields marked 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if tag != 1:
            continue
        out: list[int | None] = []
        off = 0
        for w in wanted:
            if w and off + 8 <= len(body):
                out.append(struct.unpack_from("<Q", body, off)[0])
                off += 8
            else:
                out.append(None)
        return out
    return [None] * len(wanted)


@dataclass(frozen=True)
class CentralEntry:
    name: str
    offset: int
    flags: int
    crc: int
    csize: int
    usize: int
    header_len: int  # 30 + name + extra of its local header, as far as the directory knows
    symlink: bool


def read_central_directory(src: ByteSource, sig: bytes, limits: Limits) -> list[CentralEntry]:
    """From the first directory signature to the end of the stream; nothing may follow."""

    cd_offset = src.offset - 4
    central: list[CentralEntry] = []
    while sig == CENTRAL:
        if len(central) >= limits.max_entries:
            raise reject(Reason.TOO_MANY_ENTRIES, "too many entries in the central directory")
        if src.offset - cd_offset > limits.max_central_directory_bytes:
            raise reject(Reason.TOO_MANY_ENTRIES, "the central directory is too large")
        central.append(_entry(src))
        sig = src.read_exact(4, "central directory")
    cd_size = src.offset - 4 - cd_offset
    totals: tuple[int, int, int] | None = None
    if sig == EOCD64:
        (size,) = struct.unpack("<Q", src.read_exact(8, "zip64 end record"))
        if size < _EOCD64.size - 8 or size > 1 << 20:
            raise reject(Reason.ZIP_CORRUPT, "invalid zip64 end record")
        body = src.read_exact(size, "zip64 end record")
        _, _, _, _, _, n_total, z_size, z_offset = _EOCD64.unpack_from(b"\0" * 8 + body)[1:]
        totals = (n_total, z_size, z_offset)
        sig = src.read_exact(4, "zip64 locator")
        if sig == EOCD64_LOCATOR:
            src.read_exact(16, "zip64 locator")
            sig = src.read_exact(4, "end of central directory")
    if sig != EOCD:
        raise reject(Reason.ZIP_CORRUPT, "the central directory is followed by unknown data")
    _, _, _, n_total, size32, offset32, clen = _EOCD.unpack(
        src.read_exact(_EOCD.size, "end of central directory")
    )
    src.read_exact(clen, "zip comment")
    if not src.at_eof():
        raise reject(Reason.ZIP_CORRUPT, "data follows the end of the zip")
    if totals is None:
        totals = (n_total, size32, offset32)
    if totals != (len(central), cd_size, cd_offset):
        raise reject(Reason.ZIP_CORRUPT, "the end record does not match the central directory")
    return central


def _entry(src: ByteSource) -> CentralEntry:
    """One directory record; the name is checked here too (it may differ from the local)."""
    (made_by, _, flags, _, _, _, crc, csize, usize, nlen, xlen, clen, _, _, eattr, offset) = (
        _CENTRAL.unpack(src.read_exact(_CENTRAL.size, "central directory"))
    )
    raw_name = src.read_exact(nlen, "central directory")
    extra = src.read_exact(xlen, "central directory")
    src.read_exact(clen, "central directory")
    name = check_name(decode_name(raw_name, flags))
    z = zip64_values(extra, [usize == _U32, csize == _U32, offset == _U32])
    usize = z[0] if z[0] is not None else usize
    csize = z[1] if z[1] is not None else csize
    offset = z[2] if z[2] is not None else offset
    symlink = (made_by >> 8) == 3 and ((eattr >> 16) & S_IFMT) == S_IFLNK
    if flags & (0x01 | 0x40 | 0x2000):
        raise reject(Reason.ENCRYPTED, f"{name} is encrypted")
    return CentralEntry(name, offset, flags, crc, csize, usize, 30 + nlen, symlink)


def cross_check(central: list[CentralEntry], local_entries: list[LocalEntry]) -> None:
    """Symlinks, then overlaps, then any disagreement with what the stream showed."""
    for c in central:
        if c.symlink:
            raise reject(Reason.SYMLINK, f"{c.name} is a symbolic link")
    ordered = sorted(central, key=lambda c: c.offset)
    for a, b in itertools.pairwise(ordered):
        if b.offset < a.offset + a.header_len + a.csize:
            raise reject(Reason.OVERLAPPING_ENTRIES, f"{a.name} and {b.name} overlap in the zip")
    by_offset = {e.offset: e for e in local_entries}
    if len(central) != len(local_entries):
        raise reject(Reason.ZIP_CORRUPT, "the central directory lists other files")
    for c in central:
        e = by_offset.get(c.offset)
        if e is None or e.name != c.name:
            raise reject(Reason.ZIP_CORRUPT, f"{c.name} is not where the directory says")
        if (e.crc, e.csize, e.usize) != (c.crc, c.csize, c.usize) and e.csize is not None:
            raise reject(Reason.ZIP_CORRUPT, f"{c.name} differs from its directory entry")
