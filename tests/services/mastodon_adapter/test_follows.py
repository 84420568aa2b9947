"""Which reason to stop wins when several follows in flight each meet one."""

from __future__ import annotations

from hqx.errors import Reason
from services.mastodon_adapter.follows import Stop, graver, unavailable
from services.mastodon_adapter.settings import Settings


def test_the_gravest_stop_wins_whatever_the_order() -> None:
    soon = Stop(Reason.RATE_LIMITED, 1.0)
    later = Stop(Reason.RATE_LIMITED, 30.0)
    capped = Stop(Reason.FOLLOW_CAP, capped=True)
    revoked = Stop(Reason.SESSION_REVOKED, paused=True)
    erased = Stop(Reason.USER_ERASED)
    down = unavailable(Settings(unavailable_first_retry_s=2.0, unavailable_retry_s=30.0))
    assert graver(None, soon) is soon
    for a, b, want in [
        (soon, later, later),  # a retry sooner would meet the same empty budget
        (later, capped, capped),
        (revoked, later, revoked),
        (capped, erased, erased),  # nothing is recorded for an erased person
        (erased, revoked, erased),
        # the back-off's first wait (2 s) is all an unanswered call may count on: a budget
        # empty for longer (30 s) keeps the batch away until its window
        (down, later, later),
        (down, soon, down),
    ]:
        assert graver(a, b) is want and graver(b, a) is want
