"""`python -m services.mastodon_adapter`: run the Mastodon adapter until SIGTERM."""

from __future__ import annotations

import asyncio

import hqx.logging
from services.mastodon_adapter.app import create
from services.mastodon_adapter.settings import Settings


def main() -> None:
    settings = Settings()
    hqx.logging.setup(settings.log_level, json_lines=settings.log_json, service="mastodon_adapter")
    asyncio.run(create(settings).run_forever())


if __name__ == "__main__":
    main()
