"""The PBX endpoint: POST /api/v2/telephony/calls/{channel_key}."""

from __future__ import annotations

from collections.abc import AsyncIterator

import falcon.asgi

from gateway import bodies, convert, forms
from gateway.config import Config
from gateway.core_client import CoreClient
from gateway.errors import invalid_fields


class CallsResource:
    def __init__(self, config: Config, core: CoreClient) -> None:
        self._config = config
        self._core = core

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, channel_key: str
    ) -> None:
        request_id: str = req.context.request_id
        key = channel_key.removeprefix("@")

        async def upload(file_name: str, chunks: AsyncIterator[bytes]) -> str:
            recording = await self._core.upload_record(key, file_name, chunks, request_id)
            return recording.recording_id

        body = await bodies.read_call_body(req, self._config, upload)
        if body.form.values("audio_record"):
            raise invalid_fields({"audio_record": "must be a file sent as multipart/form-data"})
        try:
            form = forms.parse_call(body.form)
        except forms.FormError as err:
            raise invalid_fields(err.fields) from None
        idempotency_key = req.get_header("Idempotency-Key") or ""
        if isinstance(form, forms.CreateCall):
            call = await self._core.create_call(
                convert.create_request(form, key, idempotency_key, body.recording_id), request_id
            )
        else:
            call = await self._core.update_call(
                convert.update_request(form, key, idempotency_key, body.recording_id), request_id
            )
        resp.media = convert.call_reply(call, self._config.public_url)
