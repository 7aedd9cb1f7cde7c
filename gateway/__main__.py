"""`python -m gateway`: serves the gateway with uvicorn on VATS_HTTP_ADDR."""

from __future__ import annotations

import contextlib
import socket
import sys

import uvicorn

import vats_settings
from gateway import logs
from gateway.app import GatewayApp, create_app
from gateway.config import Config
from vats_lifetime import end_with_launcher, settle_garbage_collector

# uvicorn's exit status when the server could not start.
STARTUP_FAILURE = 3


class GatewayServer(uvicorn.Server):
    """uvicorn, settling the garbage collector once it serves (vats_lifetime), and ending the
    card streams as soon as shutdown begins.

    Card streams never end by themselves, and uvicorn tells the app it is
    stopping (the lifespan shutdown event) only once every request has ended.
    """

    def __init__(self, config: uvicorn.Config, app: GatewayApp) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        settle_garbage_collector()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._app.end_streams()
        await super().shutdown(sockets)


def main() -> None:
    end_with_launcher()
    config = vats_settings.load(Config)
    logs.setup(config.log_level)
    host, port = config.http_host_port
    app = create_app(config)
    server = GatewayServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            # X-Forwarded-For / X-Forwarded-Proto are believed only from these peers:
            # the client address in logs and the scheme of links come from them.
            proxy_headers=bool(config.trusted_proxies),
            forwarded_allow_ips=list(config.trusted_proxies),
            # uvicorn's access log shows raw paths (channel keys) and query strings
            # (tokens): the gateway writes its own, by route template.
            access_log=False,
            log_config=None,
            # No banner naming the software: it only helps whoever looks for its weaknesses.
            server_header=False,
            # Streams end at once at shutdown; other requests get this long to finish.
            timeout_graceful_shutdown=config.shutdown_grace,
        ),
        app,
    )
    # uvicorn re-raises the Ctrl-C it handled once it has shut down.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
