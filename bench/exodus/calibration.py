"""The machine's speed through the day: a fixed piece of Python work, timed in CPU seconds.

Two full days of the same population and code on two machines of this workplace spent 22-40%
more CPU in every service on the second one; CPU per follow divided by this time compares them.
The same work timed again and again on one idle machine took either of two times, 1.75x apart,
from one minute to the next, so it is read every half minute through the day and the median is
the day's figure, not one reading at the start.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time

EVERY_S = 30.0
_RECORDS = [
    {"user_id": f"u{i:06d}", "target": f"did:plc:{i * 7919:024x}", "x_id": i} for i in range(1000)
]


def python_work_s() -> float:
    """CPU seconds of a fixed mix of what the services do in Python: JSON both ways, hashing,
    sorting records (~30-50 ms here; it blocks the driver's loop that long)."""
    t = time.process_time()
    for _ in range(10):
        blob = json.dumps(_RECORDS).encode()
        json.loads(blob)
        hashlib.sha256(blob).hexdigest()
        sorted(_RECORDS, key=lambda r: str(r["target"]))
    return time.process_time() - t


def day_figure(readings: list[float]) -> float:
    """The median reading, 0.0 when none was taken."""
    return statistics.median(readings) if readings else 0.0
