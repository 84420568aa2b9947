"""`python -m services.matcher`: run the matcher until SIGTERM."""

from __future__ import annotations

import asyncio

import hqx.logging
from services.matcher.app import create
from services.matcher.settings import Settings


def main() -> None:
    settings = Settings()
    hqx.logging.setup(settings.log_level, settings.log_json, service="matcher")
    asyncio.run(create(settings).run_forever())


if __name__ == "__main__":
    main()
