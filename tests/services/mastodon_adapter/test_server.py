"""Server detection from /api/v1/instance and nodeinfo: what is supported, what is refused."""

from __future__ import annotations

import pytest

from services.mastodon_adapter.server import classify


def ni(name: str, version: str = "1.0") -> dict:
    return {"software": {"name": name, "version": version}}


@pytest.mark.parametrize(
    ("instance", "nodeinfo", "name", "supported"),
    [
        ({"version": "4.3.2"}, ni("mastodon", "4.3.2"), "mastodon", True),
        ({"version": "4.3.2"}, None, "mastodon", True),
        ({"version": "2.7.2 (compatible; Pleroma 2.6.1)"}, None, "pleroma", True),
        ({"version": "2.7.2 (compatible; Akkoma 3.13.2)"}, ni("akkoma", "3.13.2"), "akkoma", True),
        ({"version": "0.17.3 git-5fa5a1f"}, ni("gotosocial", "0.17.3"), "gotosocial", True),
        ({"version": "0.17.3 git-5fa5a1f"}, None, "gotosocial", True),
        (None, ni("misskey", "2024.1"), "misskey", False),
        ({"version": "2024.1"}, ni("lemmy"), "lemmy", False),
        (None, None, "unknown", False),
        ({"title": "a blog"}, None, "unknown", False),
    ],
)
def test_classify(instance: object, nodeinfo: object, name: str, supported: bool) -> None:
    sw = classify(instance, nodeinfo)
    assert (sw.name, sw.supported) == (name, supported)
    assert sw.note
