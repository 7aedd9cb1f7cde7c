"""Health, liveness and readiness checks, and the agent page.

Liveness (/livez) is the process alone: restart the gateway when it fails.
Readiness (/readyz) is whether requests can be served now: core answers SERVING
for telephony.v1.CallService, which it does only while its storage is reachable,
and takes the gateway's service token, without which every PBX request fails.
"""

from __future__ import annotations

import pathlib

import falcon
import falcon.asgi

from gateway.config import Config
from gateway.core_client import NOT_SERVING, SERVING, CoreClient

PACKAGE_DIR = pathlib.Path(__file__).parent
AGENT_PAGE_PATH = PACKAGE_DIR / "static" / "agent.html"
CALL_SERVICE = "telephony.v1.CallService"


class HealthResource:
    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if await self._core.healthy():
            resp.media = {"status": "ok", "core": "ok"}
        else:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "degraded", "core": "unreachable"}


class LivenessResource:
    """The process answers: nothing else is checked."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ok"}


class ReadinessResource:
    """Ready when core reports telephony.v1.CallService SERVING (storage reachable) and
    takes the gateway's service token."""

    def __init__(self, config: Config, core: CoreClient) -> None:
        self._config = config
        self._core = core

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        core = await self._core.health(CALL_SERVICE)
        if core == SERVING:
            refusal = await self._core.service_token_refusal(req.context.request_id)
            if refusal is None:
                resp.media = {"status": "ready", "core": core, "storage": "ok"}
                return
            media = {"core_auth": "refused", "message": refusal}
            self._not_ready(resp, core, "ok", media)
            return
        # NOT_SERVING: core is up but its storage is unreachable, or it is stopping.
        storage = "unreachable" if core == NOT_SERVING else "unknown"
        self._not_ready(resp, core, storage)

    def _not_ready(
        self,
        resp: falcon.asgi.Response,
        core: str,
        storage: str,
        more: dict[str, str] | None = None,
    ) -> None:
        resp.status = falcon.HTTP_503
        resp.set_header("Retry-After", str(self._config.retry_after))
        resp.media = {"status": "not_ready", "core": core, "storage": storage, **(more or {})}


class FileResource:
    """A file of the package, served as it is (read once, at start)."""

    def __init__(self, path: pathlib.Path, content_type: str) -> None:
        self._data = path.read_bytes()
        self._content_type = content_type

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = self._content_type
        resp.data = self._data
