"""A streaming zip reader that trusts nothing: local headers in order, then the central directory.

Why not stream-unzip: it must inflate every member to move past it (tweets, media), it does not
expose member offsets, and it ignores the central directory. Here a member we do not need is
skipped without inflating when its size is known, and the central directory (read in order at
the end of the stream) is cross-checked against the local headers we saw: this is how
overlapping-entry bombs, hidden entries, symlinks (only the central directory carries the
external attributes) and truncation of the directory itself are caught, in one pass.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from hqx.errors import ArchiveRejectedError, Reason
from services.ingest.bytesource import ByteSource
from services.ingest.centraldir import (
    CENTRAL,
    EOCD,
    EOCD64,
    cross_check,
    read_central_directory,
    reject,
    zip64_values,
)
from services.ingest.limits import Limits
from services.ingest.zipnames import check_name, decode_name

LOCAL = b"PK\x03\x04"
DESCRIPTOR = b"PK\x07\x08"
_LOCAL = struct.Struct("<HHHHHIIIHH")  # after the signature
_U32 = 0xFFFFFFFF
STORED, DEFLATED = 0, 8
# NOTE: small compressed reads with a large output cap: one decompress call per read for real
# data (ratio < 16), while a bomb still yields at most _OUT bytes at a time.
_READ = 64 * 1024
_OUT = 1024 * 1024


@dataclass
class LocalEntry:
    name: str
    offset: int
    flags: int
    method: int
    crc: int
    csize: int | None  # None: only the data descriptor knows
    usize: int | None
    zip64: bool
    end: int = 0  # offset just past the data (and descriptor)
    actual_crc: int | None = None
    actual_usize: int | None = None
    actual_csize: int | None = None


class Member:
    """One local entry: inflate it with caps (`chunks`), or pass over it (`skip`)."""

    def __init__(self, reader: ZipReader, entry: LocalEntry) -> None:
        self._r = reader
        self.entry = entry
        self.name = entry.name
        self._fed = 0
        self._gen: Generator[bytes, None, None] | None = None
        self._done = False
        self._failed = False
        self._descriptor_read = False

    @property
    def can_skip_raw(self) -> bool:
        return self.entry.csize is not None

    def chunks(self) -> Generator[bytes, None, None]:
        if self._gen is None:
            self._gen = self._guarded()
        return self._gen

    def _guarded(self) -> Generator[bytes, None, None]:
        try:
            yield from self._inflate()
        except BaseException:
            self._failed = True
            raise

    def skip(self) -> None:
        """Move past the member, inflating only when its end cannot be known otherwise."""
        if self._done:
            return
        if self.entry.csize is None:
            if self._gen is not None and self._failed:
                raise reject(Reason.ZIP_CORRUPT, f"cannot find the end of {self.name}")
            for _ in self.chunks():
                pass
            return
        if self._gen is not None:
            self._gen.close()
        src, e = self._r.src, self.entry
        csize = e.csize
        assert csize is not None
        src.skip(csize - self._fed, f"in {e.name}")
        self._fed = csize
        if e.flags & 0x08 and not self._descriptor_read:
            self._read_descriptor(check=False)
        self._finish(None, None)

    def _finish(self, crc: int | None, usize: int | None) -> None:
        e = self.entry
        e.actual_crc, e.actual_usize, e.actual_csize = crc, usize, self._fed
        e.end = self._r.src.offset
        self._done = True

    def _read_descriptor(self, *, check: bool, crc: int = 0, usize: int = 0) -> None:
        src, e = self._r.src, self.entry
        self._descriptor_read = True
        head = src.read_exact(4, f"data descriptor of {e.name}")
        if head == DESCRIPTOR:
            head = src.read_exact(4, f"data descriptor of {e.name}")
        size = 8 if e.zip64 else 4
        sizes = src.read_exact(2 * size, f"data descriptor of {e.name}")
        fmt = "<QQ" if size == 8 else "<II"
        d_csize, d_usize = struct.unpack(fmt, sizes)
        (d_crc,) = struct.unpack("<I", head)
        if check and (d_crc != crc or d_usize != usize or d_csize != self._fed):
            raise reject(Reason.ZIP_CORRUPT, f"{e.name} does not match its data descriptor")
        e.crc, e.csize, e.usize = d_crc, d_csize, d_usize

    def _inflate(self) -> Iterator[bytes]:
        r, e, lim = self._r, self.entry, self._r.limits
        src = r.src
        d = zlib.decompressobj(-15) if e.method == DEFLATED else None
        crc = 0
        produced = 0
        cap = lim.max_member_bytes if e.usize is None else min(e.usize, lim.max_member_bytes)
        if e.usize is not None and e.usize > lim.max_member_bytes:
            raise reject(Reason.ZIP_BOMB, f"{e.name} declares {e.usize} bytes once inflated")

        def counted(out: bytes) -> bytes:
            nonlocal crc, produced
            produced += len(out)
            r.inflated += len(out)
            if produced > cap:
                if e.usize is not None and produced > e.usize:
                    raise reject(Reason.ZIP_CORRUPT, f"{e.name} inflates beyond its declared size")
                raise reject(Reason.ZIP_BOMB, f"{e.name} inflates beyond {cap} bytes")
            if r.inflated > lim.max_total_bytes:
                raise reject(Reason.ZIP_BOMB, f"the archive inflates beyond {lim.max_total_bytes}")
            if produced > lim.ratio_floor and produced > lim.max_ratio * max(self._fed, 1):
                raise reject(Reason.ZIP_BOMB, f"{e.name} inflates more than {lim.max_ratio}x")
            crc = zlib.crc32(out, crc)
            return out

        remaining = e.csize
        try:
            while d is None or not d.eof:
                if remaining == 0:
                    break
                data = src.read_some(_READ if remaining is None else min(_READ, remaining))
                if not data:
                    raise reject(Reason.TRUNCATED, f"the archive is cut short (in {e.name})")
                self._fed += len(data)
                if remaining is not None:
                    remaining -= len(data)
                if d is None:
                    yield counted(data)
                    continue
                out = d.decompress(data, _OUT)
                while True:
                    if out:
                        yield counted(out)
                    if not d.unconsumed_tail:
                        break
                    out = d.decompress(d.unconsumed_tail, _OUT)
            if d is not None:
                if not d.eof:
                    raise reject(Reason.ZIP_CORRUPT, f"the compressed data of {e.name} is cut")
                if d.unused_data:
                    if remaining is not None:
                        raise reject(Reason.ZIP_CORRUPT, f"{e.name} has data after its end")
                    self._fed -= len(d.unused_data)
                    src.unread(d.unused_data)
        except zlib.error as exc:
            raise reject(Reason.ZIP_CORRUPT, f"the compressed data of {e.name} is invalid") from exc
        if e.flags & 0x08:
            self._read_descriptor(check=True, crc=crc, usize=produced)
        elif crc != e.crc or produced != e.usize:
            raise reject(Reason.ZIP_CORRUPT, f"{e.name} is corrupt (CRC or size mismatch)")
        self._finish(crc, produced)


class ZipReader:
    """`members()` yields each local entry in stream order; `finish()` checks the directory."""

    def __init__(self, src: ByteSource, limits: Limits) -> None:
        self.src = src
        self.limits = limits
        self.inflated = 0
        self.locals: list[LocalEntry] = []
        self._next_sig = b""

    def members(self) -> Iterator[Member]:
        if self.src.at_eof():
            raise reject(Reason.EMPTY_ARCHIVE, "the file is empty")
        try:
            sig = self.src.read_exact(4, "first header")
        except ArchiveRejectedError:
            raise reject(Reason.NOT_A_ZIP, "this file is not a zip archive") from None
        if sig in (EOCD, EOCD64):
            raise reject(Reason.EMPTY_ARCHIVE, "the zip contains no file")
        if sig != LOCAL:
            raise reject(Reason.NOT_A_ZIP, "this file is not a zip archive")
        member: Member | None = None
        while sig == LOCAL:
            if len(self.locals) >= self.limits.max_entries:
                raise reject(
                    Reason.TOO_MANY_ENTRIES, f"more than {self.limits.max_entries} files in the zip"
                )
            member = self._local()
            yield member
            member.skip()  # no-op if the caller read it whole
            sig = self.src.read_exact(4, "next header")
        if sig not in (CENTRAL, EOCD64, EOCD):
            raise reject(Reason.ZIP_CORRUPT, "unexpected data between the zip entries")
        self._next_sig = sig

    def _local(self) -> Member:
        offset = self.src.offset - 4
        (_, flags, method, _, _, crc, csize, usize, nlen, xlen) = _LOCAL.unpack(
            self.src.read_exact(_LOCAL.size, "local header")
        )
        raw_name = self.src.read_exact(nlen, "file name")
        extra = self.src.read_exact(xlen, "extra field")
        name = check_name(decode_name(raw_name, flags))
        if flags & (0x01 | 0x40 | 0x2000) or method == 99:
            raise reject(Reason.ENCRYPTED, f"{name} is encrypted")
        if method not in (STORED, DEFLATED):
            raise reject(Reason.UNSUPPORTED_ZIP, f"{name} uses compression method {method}")
        z_usize, z_csize = zip64_values(extra, [usize == _U32, csize == _U32])
        zip64 = z_usize is not None or z_csize is not None
        usize = z_usize if z_usize is not None else usize
        csize = z_csize if z_csize is not None else csize
        known: int | None = csize
        if flags & 0x08:
            if method == DEFLATED:
                known = None
            elif csize == 0:
                raise reject(
                    Reason.UNSUPPORTED_ZIP, f"{name} is stored without a size: re-zip the archive"
                )
        entry = LocalEntry(
            name, offset, flags, method, crc, known, None if known is None else usize, zip64
        )
        self.locals.append(entry)
        return Member(self, entry)

    def finish(self) -> None:
        """Read the central directory and end record; refuse anything that disagrees."""
        central = read_central_directory(self.src, self._next_sig, self.limits)
        cross_check(central, self.locals)
