"""One function per ingest business event: a log line and a counter; never raises."""

from __future__ import annotations

import contextlib
import logging

from hqx import metrics

log = logging.getLogger("services.ingest")


def archive_parsed(read_bytes: int, inflated_bytes: int) -> None:
    with contextlib.suppress(Exception):
        metrics.ARCHIVE_BYTES_READ.labels("ingest").inc(read_bytes)
        metrics.ARCHIVE_BYTES_INFLATED.labels("ingest").inc(inflated_bytes)


def graph_stored(user_id: str, version: int, following: int, follower: int, seconds: float) -> None:
    with contextlib.suppress(Exception):
        metrics.ARCHIVES_PROCESSED.labels("ingested", "").inc()
        metrics.ARCHIVE_RECORDS_PARSED.labels("ingest", "following").inc(following)
        metrics.ARCHIVE_RECORDS_PARSED.labels("ingest", "follower").inc(follower)
        metrics.GRAPH_EDGES_STORED.inc(following + follower)
        log.info(
            "graph stored",
            extra={"user_id": user_id, "graph_version": version, "following": following,
                   "follower": follower, "seconds": round(seconds, 3)},
        )  # fmt: skip


def archive_rejected(user_id: str, reason: str) -> None:
    with contextlib.suppress(Exception):
        metrics.ARCHIVES_PROCESSED.labels("rejected", reason).inc()
        log.info("archive rejected", extra={"user_id": user_id, "reason": reason})


def upload_skipped(user_id: str, reason: str) -> None:
    with contextlib.suppress(Exception):
        log.info("upload skipped", extra={"user_id": user_id, "reason": reason})
