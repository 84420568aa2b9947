"""`python -m bench.exodus [--quick] [--chaos]`: the exodus-day benchmark (issue 11).

Prints a BENCHMARKS.md section; its last line is a one-line summary of the key ratios. Without
`--chaos` it runs the day twice (1 then 2 replicas per stage); with `--chaos`, once with 2
replicas under faults. Plots and raw figures go to bench/results/exodus[-quick][-chaos]*.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
from pathlib import Path

from bench import stored
from bench.exodus.check import verify
from bench.exodus.population import Shape, build
from bench.exodus.report import RunResult, as_json, markdown, plots, summary
from bench.exodus.run import Plan, run


def reverify(data_dir: Path) -> int:
    """The checks again on a day kept by `--keep-data` (after a change to the checks)."""
    with (data_dir / "verify.pickle").open("rb") as f:
        shape, tl, seen, factor, leftovers = pickle.load(f)  # our own file, written by run()
    pop = build(shape)
    v = verify(pop, tl, seen, factor, leftovers)
    r = RunResult(str(data_dir), 0, False, len(pop.people), factor, v, tl, {}, [], [], 0.0)
    print(json.dumps(as_json([r])[0], default=str, indent=1))
    print(summary([r]))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.exodus")
    p.add_argument("--quick", action="store_true", help="500 users, a 60 s day")
    p.add_argument("--chaos", action="store_true", help="kill, restart and flush during the load")
    p.add_argument("--users", type=int, help="population size (default 20000, quick 500)")
    p.add_argument("--day-seconds", type=float, help="wall seconds per exodus day")
    p.add_argument("--replicas", default=None, help="comma-separated, e.g. 1,2")
    p.add_argument("--drain-seconds", type=float, default=None)
    p.add_argument("--keep-data", action="store_true", help="keep the run's data dir and logs")
    p.add_argument("--reverify", type=Path, help="re-run the checks on a kept data dir")
    args = p.parse_args(argv)
    if args.reverify:
        return reverify(args.reverify)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("asyncpg", "nats"):  # the chaos restarts their servers on purpose
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    users = args.users or (500 if args.quick else 20_000)
    shape = Shape.quick(users) if args.quick else Shape(users=users)
    day = args.day_seconds or (60.0 if args.quick else 600.0)
    replicas = [int(x) for x in (args.replicas or ("2" if args.chaos else "1,2")).split(",")]
    drain = args.drain_seconds or max(120.0, day * 2)
    pop = build(shape)
    print(f"exodus: {len(pop.people)} users, {pop.edges()} archive edges", file=sys.stderr)
    results = []
    for n in replicas:
        label = f"chaos ({n} replicas)" if args.chaos else f"{n} replica{'s' if n > 1 else ''}"
        plan = Plan(day, n, args.chaos, drain, args.keep_data)
        results.append(run(pop, plan, label))
        print(summary(results[-1:]), file=sys.stderr, flush=True)
    prefix = "exodus" + ("-quick" if args.quick else "") + ("-chaos" if args.chaos else "")
    images = plots(results, prefix)
    stored.save(prefix, as_json(results))
    cmd = " ".join(["python -m bench.exodus", *(argv if argv is not None else sys.argv[1:])])
    print(markdown(results, images, cmd))
    print(summary(results))
    ok = all(x is not False for r in results for x in r.verdict.passed().values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
