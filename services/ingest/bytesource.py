"""A forward-only byte reader over an iterator of chunks (the object store streams in order)."""

from __future__ import annotations

from collections.abc import Iterable

from hqx.errors import ArchiveRejectedError, Reason


class ByteSource:
    """Reads exact amounts or "whatever is there" from a chunk iterator; tracks the offset.

    Never holds more than one incoming chunk plus what a caller pushed back, so memory does not
    grow with the archive.
    """

    def __init__(self, chunks: Iterable[bytes], max_bytes: int) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self._pos = 0
        self._max = max_bytes
        self._received = 0
        self.offset = 0  # absolute offset of the next byte a caller will get

    def _fill(self) -> bool:
        for chunk in self._it:
            if not chunk:
                continue
            self._received += len(chunk)
            if self._received > self._max:
                raise ArchiveRejectedError(
                    Reason.TOO_LARGE, f"the archive is larger than {self._max} bytes"
                )
            rest = self._buf[self._pos :]
            self._buf = rest + bytes(chunk) if rest else bytes(chunk)
            self._pos = 0
            return True
        return False

    def read_exact(self, n: int, what: str) -> bytes:
        while len(self._buf) - self._pos < n:
            if not self._fill():
                raise ArchiveRejectedError(Reason.TRUNCATED, f"the archive is cut short ({what})")
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        self.offset += n
        return out

    def read_some(self, limit: int) -> bytes:
        """Up to `limit` bytes (at least one), or b"" at the end of the stream."""
        if self._pos >= len(self._buf) and not self._fill():
            return b""
        out = self._buf[self._pos : self._pos + limit]
        self._pos += len(out)
        self.offset += len(out)
        return out

    def skip(self, n: int, what: str) -> None:
        while n:
            got = self.read_some(min(n, 1 << 20))
            if not got:
                raise ArchiveRejectedError(Reason.TRUNCATED, f"the archive is cut short ({what})")
            n -= len(got)

    def unread(self, data: bytes) -> None:
        if data:
            self._buf = data + self._buf[self._pos :]
            self._pos = 0
            self.offset -= len(data)

    def at_eof(self) -> bool:
        return self._pos >= len(self._buf) and not self._fill()
