"""`window.YTD.<type>.partN = [ … ]` files: a streaming, validating scanner for graph parts.

Records in X's exact pretty-printed shape are read in runs by `fastpath` (C, or numpy where
the C library is not built). Whatever is not byte-identical to that shape (minified JSON,
escapes, extra fields, hostile input) goes through the slow path here: one JSON value at a
time, bounded in size and depth, with precise errors. Ids are validated as decimal strings,
never through float.
"""

from __future__ import annotations

import json
import re
from array import array

from hqx.errors import ArchiveRejectedError, Reason
from services.ingest import fastpath
from services.ingest.fastpath import MAX_ID, Shape
from services.ingest.limits import Limits

ID_RE = re.compile(r"^[1-9][0-9]{0,18}$")
GRAPH_KINDS = ("follower", "following")
PREFIX_RE = re.compile(
    rb"\A(?:\xef\xbb\xbf)?[ \t\r\n]*window\.YTD\.([A-Za-z0-9_]{1,64})\.part([0-9]{1,6})"
    rb"[ \t]*=[ \t]*"
)
_INDENT = 8  # blanks before a record, CRLF included
_WS = re.compile(rb"[ \t\r\n]*")
_DECODER = json.JSONDecoder()
EXPECT_VALUE, AFTER_VALUE, AFTER_END, DONE = range(4)


def malformed(name: str, what: str) -> ArchiveRejectedError:
    return ArchiveRejectedError(Reason.MALFORMED_JS, f"{name}: {what}")


def check_account_id(value: object, where: str) -> int:
    """A decimal string of at most 19 digits that fits a bigint; anything else is refused."""
    if not isinstance(value, str) or not ID_RE.match(value) or int(value) > MAX_ID:
        shown = repr(value)[:40]
        raise ArchiveRejectedError(
            Reason.INVALID_ACCOUNT_ID, f"{where}: {shown} is not an X account id"
        )
    return int(value)


def sniff(head: bytes) -> tuple[str, int] | None:
    """(type, part) of a YTD file from its first bytes, or None."""
    m = PREFIX_RE.match(head)
    return (m.group(1).decode(), int(m.group(2))) if m else None


class GraphScanner:
    """Feed the inflated bytes of one follower/following part; `finish` at the member's end."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.kind: str | None = None
        self.part = -1
        self.ids = array("q")
        self.records = 0
        self._buf = b""
        self._state = -1  # before the prefix
        self._first = True
        self._shape: Shape | None = None
        self._fast = True
        self._retry = fastpath.native_loaded()  # try the fast path again after a slow record

    # --- public -----------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        buf = self._buf + chunk if self._buf else chunk
        self._fast = True
        pos = self._run(buf, final=False)
        self._buf = buf[pos:]
        if len(self._buf) > self.limits.max_record_bytes + len(chunk):
            raise malformed(self.name, "a record is too long")

    def finish(self) -> None:
        pos = self._run(self._buf, final=True)
        if self._state not in (AFTER_END, DONE) or pos != len(self._buf):
            raise malformed(self.name, "the file ends in the middle of its JSON")
        self._buf = b""

    # --- scanning ---------------------------------------------------------------------------
    def _run(self, buf: bytes, final: bool) -> int:
        pos = 0
        if self._state == -1:
            pos = self._prefix(buf, final)
            if self._state == -1:
                return 0
        while pos < len(buf):
            state = self._state
            if state == EXPECT_VALUE:
                if self._fast:
                    new = self._fast_run(buf, pos)
                    if new != pos:
                        pos = new
                        continue
                    self._fast = False
                at = _WS.match(buf, pos).end()  # type: ignore[union-attr]
                # NOTE: a record's own indent is kept for the fast path when more bytes are
                # needed; a longer run of blanks is dropped (it would grow the buffer).
                pos = pos if at - pos <= _INDENT else at
                if at >= len(buf):
                    break
                if buf[at : at + 1] == b"]" and self._first:
                    self._state, pos = AFTER_END, at + 1
                    continue
                new = self._slow_record(buf, at, final)
                if new == at:
                    break  # more bytes needed
                pos, self._state, self._first = new, AFTER_VALUE, False
            elif state == AFTER_VALUE:
                pos = _WS.match(buf, pos).end()  # type: ignore[union-attr]
                if pos >= len(buf):
                    break
                c = buf[pos : pos + 1]
                if c == b",":
                    self._state, pos = EXPECT_VALUE, pos + 1
                    self._fast = self._fast or self._retry
                elif c == b"]":
                    self._state, pos = AFTER_END, pos + 1
                else:
                    raise malformed(self.name, f"unexpected {c!r} after record {self.records}")
            else:
                pos = _WS.match(buf, pos).end()  # type: ignore[union-attr]
                if pos >= len(buf):
                    break
                if state == AFTER_END and buf[pos : pos + 1] == b";":
                    self._state, pos = DONE, pos + 1
                    continue
                raise malformed(self.name, "unexpected data after the end of the list")
        return pos

    def _prefix(self, buf: bytes, final: bool) -> int:
        m = PREFIX_RE.match(buf)
        if m is None or len(buf) == m.end():
            if final or len(buf) > self.limits.max_record_bytes:
                raise malformed(self.name, "missing the `window.YTD.<type>.partN = ` prefix")
            return 0
        if buf[m.end() : m.end() + 1] != b"[":
            raise malformed(self.name, "the data is not a JSON list")
        kind = m.group(1).decode()
        if kind not in GRAPH_KINDS:
            raise malformed(self.name, f"unexpected data type {kind!r}")
        self.kind, self.part = kind, int(m.group(2))
        nl = b"\r\n" if buf[m.end() + 1 : m.end() + 3] == b"\r\n" else b"\n"
        self._shape = Shape.of(kind, nl)
        self._state = EXPECT_VALUE
        return m.end() + 1

    def _fast_run(self, buf: bytes, pos: int) -> int:
        """Read a run of canonical records from pos; returns the new position.

        With numpy, at most one attempt per fed chunk fails (the rest of the chunk then goes the
        slow way), so non-canonical input costs linear time; C stops at the first odd byte, so
        it is tried again after every slow record.
        """
        assert self._shape is not None
        end, ids = fastpath.read(buf, pos, self._shape)
        if end == pos:
            self._fast = False
            return pos
        self.ids.frombytes(ids.tobytes())
        self.records += len(ids)
        self._first = False
        return end

    def _slow_record(self, buf: bytes, pos: int, final: bool) -> int:
        """Parse one JSON value at pos; returns pos unchanged when more bytes are needed."""
        cap = self.limits.max_record_bytes
        window = 1024
        while True:
            piece = buf[pos : pos + window]
            at_end = pos + window >= len(buf)
            text = piece.decode("utf-8", "surrogateescape")
            try:
                value, used = _DECODER.raw_decode(text)
            except RecursionError:
                raise malformed(self.name, "JSON nested too deeply") from None
            except ValueError:
                value, used = None, -1
            if used >= 0 and (used < len(text) or final):
                break
            if not at_end:
                if window >= cap:
                    raise malformed(self.name, "a record is too long")
                window *= 4
                continue
            if final:
                raise malformed(self.name, f"invalid JSON after record {self.records}")
            if len(piece) > cap:
                raise malformed(self.name, "a record is too long")
            return pos
        self._record(value)
        return pos + len(text[:used].encode("utf-8", "surrogateescape"))

    def _record(self, value: object) -> None:
        where = f"{self.name} record {self.records + 1}"
        inner = value.get(self.kind) if isinstance(value, dict) else None
        if not isinstance(inner, dict) or "accountId" not in inner:
            raise malformed(self.name, f"record {self.records + 1} is not a {self.kind}")
        self.ids.append(check_account_id(inner["accountId"], where))
        self.records += 1


def parse_small_js(name: str, data: bytes, prefix: re.Pattern[bytes], code: Reason) -> object:
    """A small `window.X = <json>` file (manifest, account) parsed whole; errors carry `code`."""
    m = prefix.match(data)
    if m is None:
        raise ArchiveRejectedError(code, f"{name}: missing its `window.…` prefix")
    body = data[m.end() :].rstrip(b" \t\r\n")
    body = body.removesuffix(b";")
    try:
        return json.loads(body)
    except RecursionError:
        raise ArchiveRejectedError(code, f"{name}: JSON nested too deeply") from None
    except ValueError as e:
        raise ArchiveRejectedError(code, f"{name}: invalid JSON ({str(e)[:80]})") from None
