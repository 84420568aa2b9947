"""What kind of server an instance is (Mastodon, Pleroma, Akkoma, GoToSocial) and what we support.

Pure: takes the JSON of `/api/v1/instance` and of nodeinfo, returns a `Software` verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Every one of these serves the Mastodon client API we use (apps, OAuth code flow,
# /api/v2/search?resolve=true, POST /api/v1/accounts/:id/follow).
SUPPORTED = {
    "mastodon": "full support",
    "hometown": "full support (a Mastodon fork)",
    "glitch": "full support (a Mastodon fork)",
    "pleroma": "follows supported; limits differ from Mastodon, 429s are honoured",
    "akkoma": "follows supported; limits differ from Mastodon, 429s are honoured",
    "gotosocial": "follows supported; no follow CSV import on older versions",
}
# Fediverse servers without the Mastodon client API: refused with a clear reason.
NOT_COMPATIBLE = {
    "misskey",
    "calckey",
    "firefish",
    "sharkey",
    "lemmy",
    "peertube",
    "pixelfed-legacy",
    "friendica-legacy",
    "writefreely",
    "kbin",
    "mbin",
    "bookwyrm",
    "funkwhale",
}

_COMPAT_RE = re.compile(r"\(compatible;\s*([A-Za-z]+)\s*([^)]*)\)")


@dataclass(frozen=True)
class Software:
    name: str
    version: str
    supported: bool
    note: str


def classify(instance: Any, nodeinfo: Any) -> Software:
    """Decide from `/api/v1/instance` (may be None) and nodeinfo's `software` (may be None)."""
    ni_name, ni_version = "", ""
    if isinstance(nodeinfo, dict) and isinstance(nodeinfo.get("software"), dict):
        ni_name = str(nodeinfo["software"].get("name") or "").lower()
        ni_version = str(nodeinfo["software"].get("version") or "")
    version = str(instance.get("version") or "") if isinstance(instance, dict) else ""
    if ni_name in NOT_COMPATIBLE:
        return Software(ni_name, ni_version, False, f"{ni_name} has no Mastodon client API")
    if not isinstance(instance, dict) or not version:
        name = ni_name or "unknown"
        return Software(name, ni_version, False, "no Mastodon API at /api/v1/instance")
    m = _COMPAT_RE.search(version)
    name = ni_name or (m.group(1).lower() if m else "")
    if not name:
        name = "gotosocial" if "git-" in version else "mastodon"
    ver = ni_version or (m.group(2).strip() if m else version)
    note = SUPPORTED.get(name, "Mastodon-compatible API (not tested by us): follows attempted")
    return Software(name, ver, True, note)
