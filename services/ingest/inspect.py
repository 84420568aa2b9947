"""`hqx archive inspect PATH [--json]`: run the ingest parser offline on a local archive.

Exit 0 with the summary; exit 2 with one line `rejected: <reason_code>: <message>` on a
hostile or unreadable archive (never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from hqx.errors import ArchiveRejectedError
from services.ingest.archive import parse_archive

CHUNK = 1 << 20


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hqx archive inspect", description=__doc__)
    p.add_argument("path", type=Path)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = p.parse_args(argv)
    try:
        summary = parse_archive(_chunks(args.path)).summary()
    except ArchiveRejectedError as e:
        print(f"rejected: {e.code.value}: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot read {args.path}: {e.strerror}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    else:
        owner = summary["owner"]
        print(f"owner: {owner['account_id']} (@{owner['username']})")  # type: ignore[index]
        for kind in ("following", "follower"):
            print(f"{kind}: {summary[f'{kind}_count']} ids, sha256 {summary[f'{kind}_sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
