"""Runs of graph records in X's exact pretty-printed shape, read without a loop per record.

X writes every follower/following record as `P <id> Q <id> R` (`Shape`), only the id varying.
Two readers share one contract: from `pos`, read whole records of exactly that shape, stop at
the first one that is not, return where they stopped and the ids read. What stops them is left
to the JSON slow path in ytd.py, which says precisely what is wrong.

- `ytdscan.c` through ctypes, ~memcmp speed: built by `make install` and in the image
  (`python -m services.ingest.fastpath` builds it anywhere with a C compiler);
- numpy when the library is not built: the run with its digits deleted must equal the shape
  repeated, then the ids are read at their known places (about 2x slower than C).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MAX_ID = 2**63 - 1
SOURCE = Path(__file__).with_name("ytdscan.c")
LIBRARY = Path(__file__).with_name("_ytdscan.so")
_DIGITS = b"0123456789"
_WIDTH = 19  # digits of MAX_ID
_COLS = np.arange(_WIDTH)
_POW10 = 10 ** np.arange(_WIDTH - 1, -1, -1, dtype=np.uint64)
_NONE = np.empty(0, np.int64)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    """One record and its separator as X pretty-prints them, around the id's two copies."""

    p: bytes  # up to the account id
    q: bytes  # between the account id and the link's id (ends with `user_id=`)
    r: bytes  # after the link's id, up to and including the comma

    @classmethod
    def of(cls, kind: str, nl: bytes) -> Shape:
        p = nl + b"  {" + nl + b'    "' + kind.encode() + b'" : {' + nl + b'      "accountId" : "'
        q = b'",' + nl + b'      "userLink" : "https://twitter.com/intent/user?user_id='
        r = b'"' + nl + b"    }" + nl + b"  },"
        shape = cls(p, q, r)
        # NOTE: the numpy reader relies on these: one `=` and one `},` per record, no digit.
        assert shape.bare.count(b"=") == 1 and shape.bare.count(b"},") == 1
        assert shape.bare == shape.bare.translate(None, _DIGITS)
        return shape

    @property
    def bare(self) -> bytes:
        return self.p + self.q + self.r


def read(buf: bytes, pos: int, shape: Shape) -> tuple[int, np.ndarray]:
    """(end, ids) of the canonical records from pos; end == pos when the first is not one."""
    native = _native()
    if native is not None:
        return _read_native(native, buf, pos, shape)
    return _read_numpy(buf, pos, shape)


def native_loaded() -> bool:
    return _native() is not None


# --- C ------------------------------------------------------------------------------------------


Scan = Callable[..., int]


@cache
def _native() -> Scan | None:
    if not LIBRARY.exists():
        log.warning("ingest reads archives without %s: slower (make install builds it)", LIBRARY)
        return None
    fn = ctypes.CDLL(str(LIBRARY)).hqx_scan_records
    fn.restype = ctypes.c_long
    text, size = ctypes.c_char_p, ctypes.c_long
    fn.argtypes = (ctypes.c_void_p, size, text, size, text, size, text, size,
                   ctypes.c_void_p, size, ctypes.POINTER(size))  # fmt: skip
    return fn


def _read_native(fn: Scan, buf: bytes, pos: int, shape: Shape) -> tuple[int, np.ndarray]:
    cap = (len(buf) - pos) // len(shape.bare) + 1
    out = np.empty(cap, np.int64)
    count = ctypes.c_long(0)
    base = ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value or 0
    used = fn(base + pos, len(buf) - pos, shape.p, len(shape.p), shape.q, len(shape.q),
              shape.r, len(shape.r), out.ctypes.data, cap, ctypes.byref(count))  # fmt: skip
    return pos + used, out[: count.value]


def build(target: Path = LIBRARY) -> Path:
    """Compile ytdscan.c into the shared library next to it (needs a C compiler)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("no C compiler (cc/gcc) found: cannot build " + str(target))
    tmp = target.with_suffix(".tmp")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)], check=True)
    tmp.replace(target)
    return target


# --- numpy --------------------------------------------------------------------------------------


def _read_numpy(buf: bytes, pos: int, shape: Shape) -> tuple[int, np.ndarray]:
    end = buf.rfind(b"},", pos) + 2
    if end < pos + 2:
        return pos, _NONE
    span = buf[pos:end]
    unit = shape.bare
    bare = span.translate(None, _DIGITS)
    n = len(bare) // len(unit)
    if bare != unit * n:
        n = _whole_units(bare, unit)
        ends = np.flatnonzero(_pairs(span, b"},"))
        if n == 0 or len(ends) < n:
            return pos, _NONE
        span = span[: int(ends[n - 1]) + 2]
        if span.translate(None, _DIGITS) != unit * n:
            return pos, _NONE  # a digit hid a `},` of the shape
    ids = _ids(span, shape, n, digits=len(span) - n * len(unit))
    return (pos, _NONE) if ids is None else (pos + len(span), ids)


def _pairs(data: bytes, pair: bytes) -> np.ndarray:
    """Mask of the positions where the two-byte `pair` starts in `data`."""
    a = np.frombuffer(data, np.uint8)
    return (a[:-1] == pair[0]) & (a[1:] == pair[1])


def _whole_units(bare: bytes, unit: bytes) -> int:
    """How many whole units `bare` starts with."""
    want = np.frombuffer(unit * (len(bare) // len(unit) + 1), np.uint8)[: len(bare)]
    diff = np.flatnonzero(np.frombuffer(bare, np.uint8) != want)
    return (int(diff[0]) if len(diff) else len(bare)) // len(unit)


def _ids(span: bytes, shape: Shape, n: int, digits: int) -> np.ndarray | None:
    """The ids of n records that are the shape once their `digits` digits are deleted.

    Both copies of each id must be the same 1 to 19 digits without a leading zero, the value
    must fit a bigint, and no digit may sit anywhere else; otherwise None. Rows of 20 bytes are
    copied from a sliding-window view, so nothing per byte is built but those rows.
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
    start = eq - (len(shape.q) - 1) - length  # where the account's id would start
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


if __name__ == "__main__":
    print(f"built {build(Path(sys.argv[1]) if len(sys.argv) > 1 else LIBRARY)}")
