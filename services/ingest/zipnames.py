"""Member names: decoding, and refusing any name that could point outside the archive."""

from __future__ import annotations

import re

from hqx.errors import ArchiveRejectedError, Reason

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def decode_name(raw: bytes, flags: int) -> str:
    """UTF-8 when the zip says so (bit 11), else the historical cp437 of the zip format."""
    if flags & 0x800:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveRejectedError(
                Reason.UNSAFE_PATH, "a file name is not valid UTF-8"
            ) from None
    return raw.decode("cp437")


def check_name(name: str) -> str:
    """Refuse absolute names, `..` components, drive letters and control characters.

    Nothing is ever written to disk from a name; the check exists because a hostile name is a
    sign of a hostile archive, and because other tools may unpack what we accepted.
    """
    shown = name[:80].encode("unicode_escape").decode("ascii")
    if not name or _CONTROL.search(name):
        raise ArchiveRejectedError(Reason.UNSAFE_PATH, f"unsafe file name {shown!r}")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise ArchiveRejectedError(Reason.UNSAFE_PATH, f"absolute file name {shown!r}")
    if ".." in re.split(r"[/\\]", name):
        raise ArchiveRejectedError(Reason.UNSAFE_PATH, f"file name {shown!r} leaves the archive")
    return name


def logical_path(name: str) -> str | None:
    """The path inside the archive root, with one nesting top folder removed; None for noise.

    Archives re-zipped on a Mac sit under one top folder and carry `__MACOSX/` resource forks.
    """
    if name.startswith("__MACOSX/") or "/._" in name or name.startswith("._"):
        return None
    parts = name.split("/")
    if len(parts) > 2 and parts[0] != "data" and parts[1] == "data":
        return "/".join(parts[1:])
    return name
