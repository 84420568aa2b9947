"""30 ways people type an instance address: each gives the right base URL or a clear error."""

from __future__ import annotations

import pytest

from hqx.errors import Reason
from services.mastodon_adapter.instance import InstanceError, normalize

SOCIAL = "https://mastodon.social"

RESOLVES = [
    ("mastodon.social", SOCIAL),
    ("MASTODON.SOCIAL", SOCIAL),
    ("  mastodon.social  ", SOCIAL),
    ("mastodon.social.", SOCIAL),
    ("https://mastodon.social", SOCIAL),
    ("https://mastodon.social/", SOCIAL),
    ("HTTPS://Mastodon.Social///", SOCIAL),
    ("http://mastodon.social", SOCIAL),  # upgraded: tokens never go in clear text
    ("@alice@mastodon.social", SOCIAL),
    ("alice@Mastodon.Social", SOCIAL),
    ("https://mastodon.social/@alice", SOCIAL),
    ("mastodon.social/@alice/12345?x=1#top", SOCIAL),
    ("mastodon.social:443", SOCIAL),
    ("social.sub.example.org", "https://social.sub.example.org"),
    ("@Bob@Social.Sub.Example.Org/", "https://social.sub.example.org"),
    ("https://host.example:8443//", "https://host.example:8443"),
    ("mästodon.de", "https://xn--mstodon-5wa.de"),
    ("@léa@MÄSTODON.de", "https://xn--mstodon-5wa.de"),
    ("xn--mstodon-5wa.de", "https://xn--mstodon-5wa.de"),
]

LOCAL = [
    ("localhost:3150", "http://localhost:3150"),
    ("http://127.0.0.1:3150/", "http://127.0.0.1:3150"),
    ("@alice@127.0.0.1:3150", "http://127.0.0.1:3150"),
]

REFUSED = [
    ("", "empty"),
    ("mastodon", "full domain"),
    ("a..b.org", "invalid host"),
    ("ftp://mastodon.social", "scheme"),
    ("mastodon.social:99999", "port"),
    ("-bad-.com", "invalid host"),
    ("https://user:pw@mastodon.social", "credentials"),
    ("@@", "@user@instance"),
    ("exa mple.com", "spaces"),
    ("localhost:3000", "local"),
    ("10.1.2.3", "local"),
]


@pytest.mark.parametrize(("typed", "base_url"), RESOLVES)
def test_spelling_resolves(typed: str, base_url: str) -> None:
    assert normalize(typed).base_url == base_url


@pytest.mark.parametrize(("typed", "base_url"), LOCAL)
def test_local_addresses_only_when_allowed(typed: str, base_url: str) -> None:
    assert normalize(typed, allow_local=True).base_url == base_url
    with pytest.raises(InstanceError):
        normalize(typed)


@pytest.mark.parametrize(("typed", "why"), REFUSED)
def test_spelling_refused_with_reason(typed: str, why: str) -> None:
    with pytest.raises(InstanceError) as e:
        normalize(typed)
    assert e.value.code == Reason.INVALID_INSTANCE
    assert why in e.value.message


def test_thirty_spellings() -> None:
    assert len(RESOLVES) + len(LOCAL) + len(REFUSED) >= 30
