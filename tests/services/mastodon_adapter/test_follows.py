"""Which reason to stop wins when several follows in flight each meet one."""

from __future__ import annotations

from hqx.errors import Reason
from services.mastodon_adapter.follows import Stop, graver


def test_the_gravest_stop_wins_whatever_the_order() -> None:
    soon = Stop(Reason.RATE_LIMITED, 1.0)
    later = Stop(Reason.RATE_LIMITED, 30.0)
    capped = Stop(Reason.FOLLOW_CAP, capped=True)
    revoked = Stop(Reason.SESSION_REVOKED, paused=True)
    erased = Stop(Reason.USER_ERASED)
    assert graver(None, soon) is soon
    for a, b, want in [
        (soon, later, later),  # a retry sooner would meet the same empty budget
        (later, capped, capped),
        (revoked, later, revoked),
        (capped, erased, erased),  # nothing is recorded for an erased person
        (erased, revoked, erased),
    ]:
        assert graver(a, b) is want and graver(b, a) is want
