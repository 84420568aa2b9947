"""`python -m services.bluesky_adapter`: build settings, set up logging, run the service."""

from __future__ import annotations

import asyncio

from hqx import logging as hqx_logging
from services.bluesky_adapter.app import SERVICE, create
from services.bluesky_adapter.settings import Settings


def main() -> None:
    settings = Settings()
    hqx_logging.setup(settings.log_level, settings.log_json, service=SERVICE)
    asyncio.run(create(settings).run_forever())


if __name__ == "__main__":
    main()
