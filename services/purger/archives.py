"""Raw archives in the object store: find the ones past their limit (pure), delete them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from hqx import erasure
from hqx.subjects import ARCHIVE_BUCKET, USER_ID_RE

STREAM = erasure.ARCHIVE_STREAM


@dataclass(frozen=True)
class Chunks:
    """Chunks stored under one nuid, and when the last one arrived."""

    nuid: str
    subject: str
    last_at: datetime


def owner_of(object_name: str) -> str | None:
    """Object names are `<user_id>/<something>` (chosen by the gateway)."""
    head = object_name.split("/", 1)[0]
    return head if USER_ID_RE.fullmatch(head) else None


def expired_objects(
    objects: list[erasure.StoredObject], now: datetime, max_age_s: float
) -> list[erasure.StoredObject]:
    """Objects older than the limit, and deleted-object metas (they still name the object)."""
    limit = now - timedelta(seconds=max_age_s)
    return [o for o in objects if o.deleted or (o.mtime is not None and o.mtime <= limit)]


def abandoned_chunks(
    chunks: list[Chunks], objects: list[erasure.StoredObject], now: datetime, after_s: float
) -> list[Chunks]:
    """Chunks no live object points at (an upload that never finished), untouched for long."""
    live = {o.nuid for o in objects if not o.deleted}
    limit = now - timedelta(seconds=after_s)
    return [c for c in chunks if c.nuid not in live and c.last_at <= limit]


async def list_chunks(js: JetStreamContext) -> list[Chunks]:
    prefix = f"$O.{ARCHIVE_BUCKET}.C."
    out = []
    for subject in await erasure.subject_counts(js, STREAM, prefix + ">"):
        try:
            last = await js.get_last_msg(STREAM, subject)
        except NotFoundError:
            # NOTE: purged since the listing (ingest deletes each archive it unpacked). Raised,
            # it failed the whole sweep: 27 times at a full exodus day's peak, the completions
            # and expired rows of each of those sweeps waiting for the next.
            continue
        if last.time is not None:
            out.append(Chunks(subject.removeprefix(prefix), subject, last.time))
    return out
