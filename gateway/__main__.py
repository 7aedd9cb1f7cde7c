"""`python -m gateway`: serves the gateway with uvicorn on VATS_HTTP_ADDR."""

from __future__ import annotations

import logging

import uvicorn

from gateway.app import create_app
from gateway.config import Config


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = Config()
    host, port = config.http_host_port
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        proxy_headers=True,
        # Card streams never end by themselves: give them a few seconds, then close.
        timeout_graceful_shutdown=config.shutdown_grace,
    )


if __name__ == "__main__":
    main()
