"""Each benchmark's raw figures, kept in bench/results/<name>.json, and when they were measured.

`python -m bench.<name> --from-results` prints its BENCHMARKS.md section again from that file
without running (the full-size runs take from minutes to hours).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def save(name: str, res: Any) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2, default=str))


def load(name: str) -> Any:
    return json.loads((RESULTS / f"{name}.json").read_text())


def measured_on(name: str) -> str:
    """The date the stored figures were committed (a checkout's file times say nothing)."""
    path = RESULTS / f"{name}.json"
    out = subprocess.run(
        ["git", "log", "-1", "--format=%cs", "--", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RESULTS,
    ).stdout.strip()
    return out or "not committed yet"


def cli(
    name: str,
    run: Callable[[bool], Coroutine[Any, Any, Any]],
    report: Callable[[Any], str],
    passed: Callable[[Any], bool] = lambda _r: True,
) -> int:
    """The command line of a benchmark that runs in one coroutine: `[--quick] [--from-results]`.
    Saves its figures, prints its markdown section; exit 1 when `passed` says a target failed."""
    p = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--from-results", action="store_true", help="print the stored results only")
    args = p.parse_args()
    if args.from_results:
        print(report(load(name)))
        return 0
    r = asyncio.run(run(args.quick))
    save(name, r)
    print(report(r))
    return 0 if passed(r) else 1
