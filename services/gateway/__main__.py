"""`python -m services.gateway`: serve the gateway with uvicorn on HQX_GATEWAY_PORT."""

from __future__ import annotations

import uvicorn

from hqx import logging as hqx_logging
from services.gateway.app import create
from services.gateway.settings import Settings


def main() -> None:
    settings = Settings()
    hqx_logging.setup(settings.log_level, settings.log_json, service="gateway")
    uvicorn.run(
        create(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
