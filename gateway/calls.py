"""The PBX endpoint: POST /api/v2/telephony/calls/{channel_key}."""

from __future__ import annotations

from collections.abc import AsyncIterator

import falcon.asgi

from gateway import bodies, convert, forms
from gateway.config import Config
from gateway.core_client import CoreClient
from gateway.errors import GatewayError
from gateway.metrics import RATE_LIMITED
from gateway.ratelimit import RateLimiter


def rate_limited(retry_after: int) -> GatewayError:
    return GatewayError(
        429,
        "rate_limited",
        f"too many requests on this channel, retry after {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


class CallsResource:
    def __init__(
        self, config: Config, core: CoreClient, limiter: RateLimiter | None = None
    ) -> None:
        self._config = config
        self._core = core
        self._limiter = limiter or RateLimiter(config.rate_limit)

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, channel_key: str
    ) -> None:
        request_id: str = req.context.request_id
        key = channel_key.removeprefix("@")
        # Before any byte of the body is read: a flood costs the gateway next to nothing.
        wait = self._limiter.acquire(key)
        if wait > 0:
            RATE_LIMITED.inc()
            raise rate_limited(RateLimiter.retry_after(wait))

        async def upload(file_name: str, chunks: AsyncIterator[bytes]) -> str:
            recording = await self._core.upload_record(key, file_name, chunks, request_id)
            return recording.recording_id

        body = await bodies.read_call_body(req, self._config, upload)
        form = body.call
        # Metrics and the request's log line count requests by action.
        req.context.action = "create_call" if isinstance(form, forms.CreateCall) else "update_call"
        idempotency_key = req.get_header("Idempotency-Key") or ""
        if isinstance(form, forms.CreateCall):
            call = await self._core.create_call(
                convert.create_request(form, key, idempotency_key, body.recording_id), request_id
            )
        else:
            call = await self._core.update_call(
                convert.update_request(form, key, idempotency_key, body.recording_id), request_id
            )
        resp.media = convert.call_reply(call, self._config.public_url_for(req.scheme))
