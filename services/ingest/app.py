"""The ingest service: one durable consumer on `archive.uploaded`."""

from __future__ import annotations

import functools

from hqx.messages import ArchiveUploaded
from hqx.service import Service
from hqx.subjects import CONSUMERS_BY_SERVICE
from services.ingest.handlers import Deps, handle_archive_uploaded
from services.ingest.settings import Settings


def create(settings: Settings) -> Service:
    svc = Service("ingest", settings, uses_redis=False)
    deps = Deps(svc, settings)
    (spec,) = CONSUMERS_BY_SERVICE["ingest"]
    svc.consume(
        spec,
        (ArchiveUploaded,),
        functools.partial(handle_archive_uploaded, deps=deps),
        concurrency=settings.concurrency,
    )
    return svc
