"""Network-side limit enforcement for the simulators: windows as the real servers count them.

- `first_request`: the PDS (rate-limiter-flexible): a fixed window opens at the first
  consumption of a key and lasts `window_s`; rejected consumptions are counted too.
- `aligned`: Mastodon's RateLimiter: windows aligned to the epoch (`now // period`).

Windows are compressed by `factor` (1440: a day lasts 60 s). Every refusal is recorded as a
violation: the client asked for more than the network allows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Limit:
    name: str
    points: int
    window_s: float  # uncompressed (network) seconds
    kind: Literal["first_request", "aligned"] = "first_request"


@dataclass
class Violation:
    at: float
    limit: str
    key: str
    points: int


@dataclass(frozen=True)
class Verdict:
    ok: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds (wall clock)
    window_s: float  # compressed seconds


@dataclass
class Limiter:
    factor: float
    clock: object = time.time
    violations: list[Violation] = field(default_factory=list)
    _windows: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def consume(self, limit: Limit, key: str, points: int = 1) -> Verdict:
        now = self.clock()  # type: ignore[operator]
        win = limit.window_s / self.factor
        with self._lock:
            if limit.kind == "aligned":
                start = (now // win) * win
                w_start, used = self._windows.get((limit.name, key), (start, 0))
                if w_start != start:
                    w_start, used = start, 0
            else:
                w_start, used = self._windows.get((limit.name, key), (now, 0))
                if now >= w_start + win:
                    w_start, used = now, 0
            used += points
            self._windows[(limit.name, key)] = (w_start, used)
            ok = used <= limit.points
            if not ok:
                self.violations.append(Violation(now, limit.name, key, points))
        return Verdict(ok, limit.points, max(0, limit.points - used), w_start + win, win)

    def peek(self, limit: Limit, key: str, points: int = 1) -> bool:
        """Would `points` fit now? (for checks that must not consume, e.g. all-or-nothing)."""
        now = self.clock()  # type: ignore[operator]
        win = limit.window_s / self.factor
        with self._lock:
            w_start, used = self._windows.get((limit.name, key), (now, 0))
            if limit.kind == "aligned" and w_start != (now // win) * win:
                used = 0
            elif limit.kind == "first_request" and now >= w_start + win:
                used = 0
        return used + points <= limit.points

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
