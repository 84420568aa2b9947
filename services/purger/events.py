"""Business events of the purger: one function each, a log line and a counter, never raising."""

from __future__ import annotations

import contextlib
import logging

from hqx import metrics

log = logging.getLogger(__name__)


def data_purged(trigger: str, kinds: dict[str, int]) -> None:
    with contextlib.suppress(Exception):
        for kind, n in kinds.items():
            metrics.DATA_PURGED.labels(trigger, kind).inc(n)
        log.info("data purged", extra={"trigger": trigger, "kinds": kinds})


def migration_completed(user_id: str) -> None:
    with contextlib.suppress(Exception):
        metrics.MIGRATIONS_COMPLETED.inc()
        log.info("migration completed", extra={"user_id": user_id})


def erase_settling(user_id: str, delay_s: float) -> None:
    with contextlib.suppress(Exception):
        log.info("erase pass done, settling", extra={"user_id": user_id, "delay_s": delay_s})


def sweep_failed(error: BaseException, step: str) -> None:
    with contextlib.suppress(Exception):
        # NOTE: with where it failed: the class alone (NotFoundError) did not say which step
        log.warning(
            "sweep failed",
            extra={
                "step": step,
                "error_class": type(error).__name__,
                "error": str(error)[:300],
            },
            exc_info=error,
        )


def oldest_archive(age_s: float) -> None:
    """After a sweep: the age of the oldest raw archive still stored (alert past 24 h)."""
    with contextlib.suppress(Exception):
        metrics.ARCHIVE_OLDEST_AGE_SECONDS.set(age_s)
