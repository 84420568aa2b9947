"""A small synthetic X archive (zip) for the gateway's tests: the real layout, fake people."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path


def _js(kind: str, part: int, records: list[dict]) -> str:
    return f"window.YTD.{kind}.part{part} = " + json.dumps(records, indent=2)


def write_archive(
    path: Path,
    account_id: str,
    username: str,
    following: list[str],
    followers: list[str],
    padding_bytes: int = 2_000_000,
    top_folder: str = "",
) -> Path:
    """Write an archive to `path`; `padding_bytes` of tweets/media stand for what slimming drops."""
    pre = f"{top_folder}/" if top_folder else ""
    manifest = {
        "userInfo": {"accountId": account_id, "userName": username, "displayName": username},
        "archiveInfo": {"sizeBytes": str(padding_bytes), "isPartialArchive": False},
        "dataTypes": {
            "following": {
                "files": [
                    {
                        "fileName": "data/following.js",
                        "globalName": "YTD.following.part0",
                        "count": str(len(following)),
                    }
                ]
            },
            "follower": {
                "files": [
                    {
                        "fileName": "data/follower.js",
                        "globalName": "YTD.follower.part0",
                        "count": str(len(followers)),
                    }
                ]
            },
        },
    }
    account = [
        {
            "account": {
                "accountId": account_id,
                "username": username,
                "accountDisplayName": username,
                "createdAt": "2010-01-01T00:00:00Z",
            }
        }
    ]

    def link(i: str) -> str:
        return f"https://twitter.com/intent/user?user_id={i}"

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(pre + "Your archive.html", "<html>archive</html>")
        z.writestr(pre + "data/manifest.js", "window.__THAR_CONFIG = " + json.dumps(manifest))
        z.writestr(pre + "data/account.js", _js("account", 0, account))
        z.writestr(
            pre + "data/following.js",
            _js(
                "following",
                0,
                [{"following": {"accountId": i, "userLink": link(i)}} for i in following],
            ),
        )
        z.writestr(
            pre + "data/follower.js",
            _js(
                "follower",
                0,
                [{"follower": {"accountId": i, "userLink": link(i)}} for i in followers],
            ),
        )
        # Media is stored (not deflated) in real archives: incompressible bytes.
        media = zipfile.ZipInfo(pre + "data/tweets_media/big.jpg")
        media.compress_type = zipfile.ZIP_STORED
        rng = random.Random(0)
        with z.open(media, "w", force_zip64=padding_bytes > 2**31) as f:
            written = 0
            while written < padding_bytes:
                n = min(1 << 20, padding_bytes - written)
                f.write(rng.randbytes(n))
                written += n
        z.writestr(pre + "data/tweets.js", _js("tweets", 0, [{"tweet": {"id": "1"}}]))
    return path
