"""`python -m services.ingest`: run the ingest service until SIGTERM."""

from __future__ import annotations

import asyncio

from hqx import logging as hqx_logging
from services.ingest.app import create
from services.ingest.settings import Settings


def main() -> None:
    settings = Settings()
    hqx_logging.setup(settings.log_level, settings.log_json, service="ingest")
    asyncio.run(create(settings).run_forever())


if __name__ == "__main__":
    main()
