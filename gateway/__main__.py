"""`python -m gateway`: serves the gateway with uvicorn on VATS_HTTP_ADDR."""

from __future__ import annotations

import uvicorn

from gateway import logs
from gateway.app import create_app
from gateway.config import Config


def main() -> None:
    config = Config()
    logs.setup(config.log_level)
    host, port = config.http_host_port
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        proxy_headers=True,
        # uvicorn's access log shows raw paths (channel keys) and query strings
        # (tokens): the gateway writes its own, by route template.
        access_log=False,
        log_config=None,
        # Card streams never end by themselves: give them a few seconds, then close.
        timeout_graceful_shutdown=config.shutdown_grace,
    )


if __name__ == "__main__":
    main()
