"""`data/manifest.js` and `data/account.js`: who owns the archive and where the graph parts are."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hqx.errors import ArchiveRejectedError, Reason
from services.ingest.ytd import GRAPH_KINDS, check_account_id, parse_small_js

MANIFEST_PREFIX = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*window\.__THAR_CONFIG\s*=\s*")
ACCOUNT_PREFIX = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*window\.YTD\.account\.part[0-9]+\s*=\s*")
_DATA_FILE = re.compile(r"^data/[A-Za-z0-9_.-]{1,128}\.js$")
_GLOBAL = re.compile(r"^YTD\.([A-Za-z0-9_]+)\.part([0-9]{1,6})$")


@dataclass(frozen=True)
class Part:
    file_name: str  # logical path, e.g. data/follower-part1.js
    kind: str
    part: int
    count: int


@dataclass(frozen=True)
class Owner:
    account_id: str
    username: str | None


@dataclass(frozen=True)
class Manifest:
    owner: Owner | None
    parts: dict[str, list[Part]]  # only the graph kinds the manifest describes


def _invalid(what: str) -> ArchiveRejectedError:
    return ArchiveRejectedError(Reason.MANIFEST_INVALID, f"data/manifest.js: {what}")


def _count(value: object, where: str) -> int:
    # NOTE: X writes numbers as strings ("123"); accept both, never a float.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(f"{where} is not a count")
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise _invalid(f"{where} is not a count")
    return int(text)


def parse_manifest(data: bytes) -> Manifest:
    doc = parse_small_js("data/manifest.js", data, MANIFEST_PREFIX, Reason.MANIFEST_INVALID)
    if not isinstance(doc, dict):
        raise _invalid("not a JSON object")
    owner = None
    info = doc.get("userInfo")
    if isinstance(info, dict) and "accountId" in info:
        check_account_id(info["accountId"], "data/manifest.js userInfo")
        name = info.get("userName")
        owner = Owner(info["accountId"], name if isinstance(name, str) else None)
    types = doc.get("dataTypes", {})
    if not isinstance(types, dict):
        raise _invalid("dataTypes is not an object")
    parts: dict[str, list[Part]] = {}
    for kind in GRAPH_KINDS:
        if kind not in types:
            continue
        entry = types[kind]
        files = entry.get("files", []) if isinstance(entry, dict) else None
        if not isinstance(files, list):
            raise _invalid(f"dataTypes.{kind}.files is not a list")
        parts[kind] = [_part(kind, f, i) for i, f in enumerate(files)]
    return Manifest(owner, parts)


def _part(kind: str, f: object, i: int) -> Part:
    where = f"dataTypes.{kind}.files[{i}]"
    if not isinstance(f, dict):
        raise _invalid(f"{where} is not an object")
    name = f.get("fileName")
    if not isinstance(name, str) or not _DATA_FILE.match(name) or ".." in name:
        raise _invalid(f"{where} points outside data/: {str(name)[:80]!r}")
    glob = f.get("globalName")
    m = _GLOBAL.match(glob) if isinstance(glob, str) else None
    if m is None or m.group(1) != kind:
        raise _invalid(f"{where} has globalName {str(glob)[:60]!r}")
    return Part(name, kind, int(m.group(2)), _count(f.get("count"), f"{where}.count"))


def parse_account(data: bytes) -> Owner:
    doc = parse_small_js("data/account.js", data, ACCOUNT_PREFIX, Reason.MALFORMED_JS)
    try:
        account = doc[0]["account"]  # type: ignore[index]
        account_id = account["accountId"]
    except (KeyError, IndexError, TypeError):
        raise ArchiveRejectedError(
            Reason.MALFORMED_JS, "data/account.js does not describe an account"
        ) from None
    check_account_id(account_id, "data/account.js")
    name = account.get("username")
    return Owner(account_id, name if isinstance(name, str) else None)
