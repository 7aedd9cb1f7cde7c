"""Health check, the OpenAPI document and the agent page."""

from __future__ import annotations

import pathlib

import falcon
import falcon.asgi

from gateway.core_client import CoreClient

PACKAGE_DIR = pathlib.Path(__file__).parent
OPENAPI_PATH = PACKAGE_DIR / "openapi.json"
AGENT_PAGE_PATH = PACKAGE_DIR / "static" / "agent.html"


class HealthResource:
    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if await self._core.healthy():
            resp.media = {"status": "ok", "core": "ok"}
        else:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "degraded", "core": "unreachable"}


class FileResource:
    """A file of the package, served as it is (read once, at start)."""

    def __init__(self, path: pathlib.Path, content_type: str) -> None:
        self._data = path.read_bytes()
        self._content_type = content_type

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = self._content_type
        resp.data = self._data
