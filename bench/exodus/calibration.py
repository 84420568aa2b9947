"""The machine's speed, read before a day: a fixed piece of Python work, timed in CPU seconds.

Two full days of the same population and code on two machines of this workplace spent 22-40%
more CPU in every service on the second one. CPU per follow divided by this time is comparable
from machine to machine; CPU per follow alone is not.
"""

from __future__ import annotations

import hashlib
import json
import math
import time


def python_work_s(rounds: int = 5) -> float:
    """CPU seconds of a fixed mix of what the services do in Python (JSON both ways, hashing,
    sorting records), best of `rounds`: the least disturbed by whatever else runs."""
    records = [
        {"user_id": f"u{i:06d}", "target": f"did:plc:{i * 7919:024x}", "x_id": i}
        for i in range(2000)
    ]
    best = math.inf
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(20):
            blob = json.dumps(records).encode()
            json.loads(blob)
            hashlib.sha256(blob).hexdigest()
            sorted(records, key=lambda r: str(r["target"]))
        best = min(best, time.process_time() - t)
    return best
