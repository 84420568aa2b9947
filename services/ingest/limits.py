"""The caps every archive is held to: sizes, counts and ratios, tuned for real X archives."""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True)
class Limits:
    """Real archives reach several GB (media), but only a few graph members are ever inflated.

    The ratio cap applies once a member inflated more than `ratio_floor` bytes: small members
    (a page of whitespace) may legitimately compress very well.
    """

    max_archive_bytes: int = 16 * GIB
    max_entries: int = 200_000
    max_member_bytes: int = 2 * GIB  # inflated, per member that we inflate
    max_total_bytes: int = 8 * GIB  # inflated, summed over the members we inflate
    max_ratio: int = 200
    ratio_floor: int = 16 * MIB
    max_record_bytes: int = 64 * KIB  # one follower/following record, or the file prefix line
    max_small_file_bytes: int = 4 * MIB  # manifest.js, account.js
    max_central_directory_bytes: int = 256 * MIB
