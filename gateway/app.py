"""Wires the gateway: configuration, the core client, resources and error handling."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import falcon
import falcon.asgi

from gateway import errors
from gateway.agent_vocabulary import AGENT_VOCABULARY_PATH, AgentVocabularyResource
from gateway.audit import AuditExportResource, AuditResource
from gateway.board import BoardResource, BoardStreamResource
from gateway.callbacks import CallbacksResource, CalledBackResource
from gateway.calls import CallsResource
from gateway.cards import CLIENT_GONE, CardsResource
from gateway.config import Config
from gateway.core_client import CoreClient
from gateway.feed import CardRouter
from gateway.health import (
    AGENT_PAGE_PATH,
    FileResource,
    HealthResource,
    LivenessResource,
    ReadinessResource,
)
from gateway.history import CallHistoryResource, CallResource
from gateway.metrics import MetricsResource, RequestObserver
from gateway.openapi import OpenApiResource
from gateway.records import RecordsResource
from gateway.security import SecurityHeaders
from gateway.tickets import StreamTicketsResource

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class RequestIdMiddleware:
    """Gives every request an id (the caller's X-Request-ID when sane), echoed and sent to core."""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        given = req.get_header("X-Request-ID") or ""
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        req.context.request_id = request_id
        resp.set_header("X-Request-ID", request_id)


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class GatewayApp(falcon.asgi.App):
    """Falcon's app, plus what card streams need to end promptly.

    Falcon notices a client that hung up only when it next writes to it, and a
    card stream may not write for a whole keepalive period: every request gets
    an event, set when the server reports `http.disconnect`, that its stream
    can wait on. `end_streams` ends every card stream, for a quick shutdown.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stopping = asyncio.Event()

    def end_streams(self) -> None:
        self.stopping.set()

    async def __call__(  # type: ignore[override]
        self, scope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        if scope.get("type") != "http":
            await super().__call__(scope, receive, send)
            return
        gone = asyncio.Event()

        async def receive_noting_hang_up() -> MutableMapping[str, Any]:
            message = await receive()
            if message.get("type") == "http.disconnect":
                gone.set()
            return message

        scope[CLIENT_GONE] = gone
        await super().__call__(scope, receive_noting_hang_up, send)


def create_app(config: Config | None = None, core: CoreClient | None = None) -> GatewayApp:
    config = config or Config()
    core = core or CoreClient(config)

    # The security headers first: their process_response runs last, over the final answer.
    security = SecurityHeaders(AGENT_PAGE_PATH.parent, config.public_url)
    # After core: the card feed starts once core's client is open.
    router = CardRouter(config, core)
    middleware: list[Any] = [security, RequestIdMiddleware(), RequestObserver(), core, router]
    app = GatewayApp(middleware=middleware)
    multipart = app.req_options.media_handlers[falcon.MEDIA_MULTIPART]
    assert isinstance(multipart, falcon.media.MultipartFormHandler)
    multipart.parse_options.max_body_part_count = config.max_form_parts
    app.set_error_serializer(errors.serialize_error)
    app.add_error_handler(Exception, errors.handle_unexpected)

    app.add_route("/api/v2/telephony/calls/{channel_key}", CallsResource(config, core))
    app.add_route("/api/v2/telephony/records/{recording_id}", RecordsResource(core))
    app.add_route(
        "/api/v2/telephony/cards/stream", CardsResource(config, core, app.stopping, router)
    )
    app.add_route("/api/v2/telephony/history", CallHistoryResource(config, core))
    app.add_route("/api/v2/telephony/history/{call_id}", CallResource(config, core))
    app.add_route("/api/v2/telephony/callbacks", CallbacksResource(core))
    app.add_route("/api/v2/telephony/callbacks/{callback_id}/called-back", CalledBackResource(core))
    app.add_route("/api/v2/telephony/board", BoardResource(core))
    app.add_route("/api/v2/telephony/board/stream", BoardStreamResource(config, core, app.stopping))
    app.add_route("/api/v2/telephony/stream-tickets", StreamTicketsResource(core))
    app.add_route("/api/v2/telephony/audit", AuditResource(core))
    app.add_route("/api/v2/telephony/audit/export", AuditExportResource(core))
    app.add_route("/healthz", HealthResource(core))
    app.add_route("/livez", LivenessResource())
    app.add_route("/readyz", ReadinessResource(config, core))
    app.add_route("/metrics", MetricsResource())
    app.add_route("/openapi.json", OpenApiResource())
    app.add_route("/agent", FileResource(AGENT_PAGE_PATH, falcon.MEDIA_HTML))
    board_page = AGENT_PAGE_PATH.with_name("board.html")
    app.add_route("/board", FileResource(board_page, falcon.MEDIA_HTML))
    app.add_route(AGENT_VOCABULARY_PATH, AgentVocabularyResource())
    app.add_static_route("/static", str(AGENT_PAGE_PATH.parent))
    return app
