"""`python -m services.purger`: run the purger until SIGTERM."""

import asyncio

from hqx import logging as hqx_logging
from services.purger.app import create
from services.purger.settings import Settings


def main() -> None:
    settings = Settings()
    hqx_logging.setup(settings.log_level, settings.log_json, service="purger")
    asyncio.run(create(settings).run_forever())


if __name__ == "__main__":
    main()
