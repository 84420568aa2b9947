"""Fixture for the local Mastodon peer (../shared/peers/mastodon): one instance per session.

`mastodon_peer` starts it on a free port with 1,100 remote accounts (enough for the 1,000-follow
test) and yields its manifest (`base_url`, `domain`, `users` with tokens); `mastodon` resets it
(fresh accounts, no faults) before each test. Skipped when the peer is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hqx.embedded import free_port

PEER_DIR = Path(
    os.environ.get(
        "HQX_MASTODON_PEER_DIR",
        Path(__file__).resolve().parents[3] / "shared" / "peers" / "mastodon",
    )
)
REMOTE_ACCOUNTS = 1100


def _http() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


@pytest.fixture(scope="session")
def mastodon_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not (PEER_DIR / "start.sh").exists():
        pytest.skip(f"Mastodon peer not found in {PEER_DIR}")
    run_dir = tmp_path_factory.mktemp("mastodon-peer")
    env = {
        **os.environ,
        "MASTODON_PEER_PORT": str(free_port()),
        "MASTODON_PEER_RUN_DIR": str(run_dir),
        "MASTODON_PEER_REMOTE_ACCOUNTS": str(REMOTE_ACCOUNTS),
        "MASTODON_PEER_USERS": "alice,bob,carol,dave,erin,frank",
    }
    subprocess.run(["bash", str(PEER_DIR / "install.sh")], env=env, check=True, capture_output=True)
    subprocess.run(["bash", str(PEER_DIR / "start.sh")], env=env, check=True)
    manifest = json.loads((run_dir / "peer.json").read_text())
    manifest["http"] = _http()
    try:
        yield manifest
    finally:
        subprocess.run(["bash", str(PEER_DIR / "stop.sh")], env=env, check=False)


@pytest.fixture
def mastodon(mastodon_peer: dict[str, Any]) -> dict[str, Any]:
    """The peer, reset: seeded accounts only (ids change), no fault rules."""
    http: requests.Session = mastodon_peer["http"]
    base = mastodon_peer["base_url"]
    http.delete(f"{base}/api/v1/_mock/faults", timeout=10)
    http.post(f"{base}/api/v1/_mock/reset", timeout=60).raise_for_status()
    return mastodon_peer


def following(peer: dict[str, Any], token: str) -> list[str]:
    """Every `acct` the token's account follows, read from the peer (all pages)."""
    http: requests.Session = peer["http"]
    base, hdr = peer["base_url"], {"Authorization": f"Bearer {token}"}
    me = http.get(f"{base}/api/v1/accounts/verify_credentials", headers=hdr, timeout=10).json()
    url: str | None = f"{base}/api/v1/accounts/{me['id']}/following?limit=40"
    out: list[str] = []
    while url:
        r = http.get(url, headers=hdr, timeout=30)
        r.raise_for_status()
        out += [a["acct"] for a in r.json()]
        url = r.links.get("next", {}).get("url")
    return out
