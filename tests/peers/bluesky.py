"""Fixtures for the local Bluesky PDS peer (../shared/peers/bluesky): the real reference PDS.

`bsky_pds` starts one PDS per session (limits off), `bsky_pds_limited` a second one with the
PDS's own rate limits on (`RATE_LIMITS=1`). Each has its own run dir and free ports, is stopped
at teardown, and yields the parsed accounts.json. Nothing is skipped: if the PDS cannot start,
the test errors. `HQX_BSKY_PEER_DIR` overrides where the harness lies; `HQX_BSKY_EXTRA_ACCOUNTS`
how many `userN.test` accounts are created besides alice..eve (default 12).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hqx.embedded import free_port

PEER_DIR = Path(
    os.environ.get(
        "HQX_BSKY_PEER_DIR", Path(__file__).resolve().parents[3] / "shared" / "peers" / "bluesky"
    )
)
_B32 = "234567abcdefghijklmnopqrstuvwxyz"


def random_did() -> str:
    """A well-formed did:plc nobody owns: the PDS accepts any well-formed follow subject."""
    return "did:plc:" + "".join(secrets.choice(_B32) for _ in range(24))


def _run(script: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PEER_DIR / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _start(run_dir: Path, *, rate_limits: bool) -> tuple[dict[str, Any], dict[str, str]]:
    install = _run("install.sh", dict(os.environ), 900)
    assert install.returncode == 0, f"PDS install failed:\n{install.stdout}\n{install.stderr}"
    pds, plc, appview = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "BSKY_RUN_DIR": str(run_dir),
        "PDS_PORT": str(pds),
        "PLC_PORT": str(plc),
        "APPVIEW_PORT": str(appview),
        "RATE_LIMITS": "1" if rate_limits else "0",
        "EXTRA_ACCOUNTS": os.environ.get("HQX_BSKY_EXTRA_ACCOUNTS", str(FIXED + SPARE)),
    }
    started = _run("start-pds.sh", env, 180)
    assert started.returncode == 0, f"PDS start failed:\n{started.stdout}\n{started.stderr}"
    info = json.loads((run_dir / "accounts.json").read_text())
    info["runDir"] = str(run_dir)
    return info, env


# Accounts 0..4 are alice..eve, then user1..; tests that name an index use the first
# 5 + FIXED; `bsky_accounts` hands out the SPARE others, each to one test only.
FIXED, SPARE = 12, 24


@pytest.fixture
def bsky_accounts(bsky_pds: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Returns a function giving an account no other test of the session uses (so what a test
    reads on its repo is its own doing)."""

    def take() -> dict[str, Any]:
        n = bsky_pds.setdefault("_next_spare", 5 + FIXED)
        assert n < len(bsky_pds["accounts"]), "raise SPARE in tests/peers/bluesky.py"
        bsky_pds["_next_spare"] = n + 1
        return dict(bsky_pds["accounts"][n])

    return take


@pytest.fixture(scope="session")
def bsky_pds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running PDS without rate limits: accounts.json (pdsUrl, accounts[...]) as a dict."""
    info, env = _start(tmp_path_factory.mktemp("bsky"), rate_limits=False)
    yield info
    _run("stop-pds.sh", env, 60)


@pytest.fixture(scope="session")
def bsky_pds_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running PDS enforcing Bluesky's real limits (429 with RateLimit-* headers)."""
    info, env = _start(tmp_path_factory.mktemp("bsky-rl"), rate_limits=True)
    yield info
    _run("stop-pds.sh", env, 60)
