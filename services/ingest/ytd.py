"""`window.YTD.<type>.partN = [ … ]` files: a streaming, validating scanner for graph parts.

X writes every follower/following record in one exact pretty-printed shape, where only the id
varies. The fast path checks a whole run of records against that shape without a Python loop
per record: the run with its digits deleted must equal the record template repeated (one C
call), then numpy reads the ids at their known places and checks the two copies of each id
agree. Whatever is not byte-identical to X's shape (CRLF is handled too; minified JSON, escapes,
extra fields, hostile input) goes through the slow path: one JSON value at a time, bounded in
size and depth, with precise errors. Ids are validated as decimal strings, never through float.
"""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hqx.errors import ArchiveRejectedError, Reason
from services.ingest.limits import Limits

MAX_ID = 2**63 - 1  # stored as bigint
ID_RE = re.compile(r"^[1-9][0-9]{0,18}$")
GRAPH_KINDS = ("follower", "following")
PREFIX_RE = re.compile(
    rb"\A(?:\xef\xbb\xbf)?[ \t\r\n]*window\.YTD\.([A-Za-z0-9_]{1,64})\.part([0-9]{1,6})"
    rb"[ \t]*=[ \t]*"
)
_DIGITS = b"0123456789"
_INDENT = 8  # blanks before a record, CRLF included
_WIDTH = 19  # digits of the largest id (MAX_ID)
_COLS = np.arange(_WIDTH)
_POW10 = 10 ** np.arange(_WIDTH - 1, -1, -1, dtype=np.uint64)
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


@dataclass(frozen=True)
class _Shape:
    """One canonical `record,` unit of a kind, as X pretty-prints it, without its two ids."""

    bare: bytes  # the unit with both ids deleted
    to_account_end: int  # from the `=` before the link's id back to the end of `accountId`'s

    @classmethod
    def of(cls, kind: str, nl: bytes) -> _Shape:
        after_account = b'",' + nl + b'      "userLink" : "https://twitter.com/intent/user?user_id='
        bare = (
            nl + b"  {" + nl + b'    "' + kind.encode() + b'" : {' + nl + b'      "accountId" : "'
            + after_account + b'"' + nl + b"    }" + nl + b"  },"
        )  # fmt: skip
        # NOTE: the fast path relies on these: one `=` and one `},` per unit, and no digit.
        assert bare.count(b"=") == 1 and bare.count(b"},") == 1
        assert bare == bare.translate(None, _DIGITS)
        return cls(bare, len(after_account) - 1)


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
        self._shape: _Shape | None = None
        self._fast = True

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
        self._shape = _Shape.of(kind, nl)
        self._state = EXPECT_VALUE
        return m.end() + 1

    def _fast_run(self, buf: bytes, pos: int) -> int:
        """Consume a run of canonical `record,` units from pos; returns the new position.

        At most one attempt per fed chunk fails (then the rest of the chunk goes the slow way),
        so non-canonical input costs linear time, never a re-check of the chunk per record.
        """
        shape = self._shape
        assert shape is not None
        end = buf.rfind(b"},", pos) + 2
        if end < pos + 2:
            return pos
        span = buf[pos:end]
        bare = span.translate(None, _DIGITS)
        n = len(bare) // len(shape.bare)
        if bare != shape.bare * n:
            self._fast = False
            n = _canonical_units(bare, shape.bare)
            if n == 0:
                return pos
            ends = np.flatnonzero(_at(span, b"},"))
            if len(ends) < n:
                return pos  # a digit hides a `},` of the template
            span = span[: int(ends[n - 1]) + 2]
            if span.translate(None, _DIGITS) != shape.bare * n:
                return pos
        ids = _read_ids(span, shape, n, digits=len(span) - n * len(shape.bare))
        if ids is None:
            self._fast = False
            return pos
        self.ids.frombytes(ids.tobytes())
        self.records += n
        self._first = False
        return pos + len(span)

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


def _at(data: bytes, pair: bytes) -> np.ndarray:
    """Mask of the positions where the two-byte `pair` starts in `data`."""
    a = np.frombuffer(data, np.uint8)
    return (a[:-1] == pair[0]) & (a[1:] == pair[1])


def _canonical_units(bare: bytes, unit: bytes) -> int:
    """How many whole template units `bare` starts with."""
    want = np.frombuffer(unit * (len(bare) // len(unit) + 1), np.uint8)[: len(bare)]
    diff = np.flatnonzero(np.frombuffer(bare, np.uint8) != want)
    first = int(diff[0]) if len(diff) else len(bare)
    return first // len(unit)


def _read_ids(span: bytes, shape: _Shape, n: int, digits: int) -> np.ndarray | None:
    """The ids of n units that are the template once their `digits` digits are deleted.

    Each unit holds its id twice: after `accountId` and at the end of `userLink`. Both holes
    must hold the same 1 to 19 digits without a leading zero, the value must fit a bigint,
    and no digit may sit anywhere else; otherwise None (the slow path then says precisely
    what is wrong). Rows of 20 bytes are copied from a sliding-window view, so nothing per
    byte is built but those rows.
    """
    a = np.frombuffer(span + b"\0" * (_WIDTH + 1), np.uint8)
    eq = np.flatnonzero(a == ord("="))
    if len(eq) != n:
        return None
    rows = sliding_window_view(a, _WIDTH + 1)
    link = rows[eq + 1]  # the link's id, left-aligned, then its closing quote
    length = np.argmax(link == ord('"'), axis=1)
    if length.min() < 1 or length.max() > _WIDTH or (link[:, 0] == ord("0")).any():
        return None
    if 2 * int(length.sum()) != digits:
        return None  # a digit outside the two ids
    start = eq - shape.to_account_end - length  # where the account's id would start
    if (a[start - 1] != ord('"')).any():
        return None  # the account's id has not the link's length
    beyond = _COLS >= length[:, None]
    if not ((rows[start][:, :_WIDTH] == link[:, :_WIDTH]) | beyond).all():
        return None
    cells = np.where(beyond, 0, link[:, :_WIDTH] - ord("0")).astype(np.uint64)
    values = (cells @ _POW10) // _POW10[length - 1]  # exact: 19 digits fit in uint64
    if (values > MAX_ID).any():
        return None
    return values.astype(np.int64)
