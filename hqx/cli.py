"""The `hqx` command: bring the stack up, run one service, inspect an archive, export a user."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

from hqx.subjects import SERVICES


def _up(args: argparse.Namespace) -> int:
    from hqx import logging as hqx_logging
    from hqx.stack import up

    hqx_logging.setup("WARNING", json_lines=False)
    only = tuple(args.only.split(",")) if args.only else SERVICES
    return up(Path(args.data_dir), fresh=args.fresh, only=only)


def _service_run(args: argparse.Namespace) -> int:
    if args.name not in SERVICES:
        print(f"unknown service {args.name!r}; one of: {', '.join(SERVICES)}", file=sys.stderr)
        return 2
    sys.argv = [f"services.{args.name}"]
    runpy.run_module(f"services.{args.name}", run_name="__main__", alter_sys=True)
    return 0


def _archive_inspect(args: argparse.Namespace) -> int:
    from services.ingest.inspect import main

    return main([args.path, *(["--json"] if args.json else [])])


def _user_export(args: argparse.Namespace) -> int:
    from services.purger.export import main

    return main([args.user_id])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hqx", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the whole platform (embedded servers if no URL is set)")
    up.add_argument("--data-dir", default=os.environ.get("HQX_DATA_DIR", ".hqx"))
    up.add_argument("--fresh", action="store_true", help="delete the data dir first")
    up.add_argument("--only", help="comma-separated services to start (default: all)")
    up.set_defaults(fn=_up)

    svc = sub.add_parser("service", help="services").add_subparsers(dest="sub", required=True)
    run = svc.add_parser("run", help="run one service against the configured servers")
    run.add_argument("name", choices=SERVICES)
    run.set_defaults(fn=_service_run)

    arch = sub.add_parser("archive", help="archives").add_subparsers(dest="sub", required=True)
    insp = arch.add_parser("inspect", help="parse an X archive offline, as ingest does")
    insp.add_argument("path")
    insp.add_argument("--json", action="store_true")
    insp.set_defaults(fn=_archive_inspect)

    user = sub.add_parser("user", help="users").add_subparsers(dest="sub", required=True)
    exp = user.add_parser("export", help="everything held on a person, as JSON")
    exp.add_argument("user_id")
    exp.set_defaults(fn=_user_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
