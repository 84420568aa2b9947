"""Pure parts of the client and the CSV: X-RateLimit-Reset formats, PKCE, the import format."""

from __future__ import annotations

import base64
import hashlib

from services.mastodon_adapter.client import parse_reset, pkce_pair
from services.mastodon_adapter.csv_export import render


def test_reset_iso8601_with_microseconds() -> None:
    assert parse_reset("2026-01-02T00:00:00.000000Z") == 1767312000.0


def test_reset_epoch_seconds_and_relative_seconds() -> None:
    assert parse_reset("1767312000") == 1767312000.0
    assert parse_reset("30", now=1000.0) == 1030.0


def test_reset_unreadable() -> None:
    assert parse_reset(None) is None
    assert parse_reset("soon") is None


def test_pkce_s256() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_csv_is_mastodon_following_list_format() -> None:
    text = render(["b@x.org", "@A@Y.org", "b@x.org", "not-an-address"])
    assert text == (
        "Account address,Show boosts,Notify on new posts,Languages\n"
        "a@y.org,true,false,\n"
        "b@x.org,true,false,\n"
    )
