"""The gateway's Prometheus metrics, GET /metrics, and the middleware that measures and
logs every request (one line each, by route template: never a raw path or query)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import falcon
import falcon.asgi
from falcon.asgi import SSEvent
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from gateway.logs import REQUEST_ID

access_log = logging.getLogger("vats.gateway.access")

# One registry per process: the gateway is one process, its metrics live as long.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
REGISTRY.register(GC_COLLECTOR)

REQUESTS = Counter(
    "vats_gateway_requests_total",
    "HTTP requests answered, by route template, action and HTTP status.",
    ["route", "action", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "vats_gateway_request_duration_seconds",
    "Time to answer a request (card streams: until the stream starts), by route and action.",
    ["route", "action"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "vats_gateway_rate_limited_total",
    "PBX requests refused by the per-channel rate limit (429).",
    registry=REGISTRY,
)
CALL_BATCH = Histogram(
    "vats_gateway_call_batch_commands",
    "PBX requests sent to core together, per SubmitCalls.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
CARD_STREAMS = Gauge(
    "vats_gateway_card_streams",
    "Card streams (SSE) open now.",
    registry=REGISTRY,
)
CARD_EVENTS = Counter(
    "vats_gateway_card_events_sent_total",
    "Card events sent over SSE, by event (show, update, hide, reset).",
    ["event"],
    registry=REGISTRY,
)

UNMATCHED = "unmatched"
# The action of a route whose resource names none itself (see action_of).
_ROUTE_ACTIONS = {
    # The PBX endpoint names create_call / update_call once it has read the form.
    "/api/v2/telephony/calls/{channel_key}": "unknown",
    "/api/v2/telephony/records/{recording_id}": "download_record",
    "/api/v2/telephony/cards/stream": "watch_cards",
}


def route_of(req: falcon.asgi.Request) -> str:
    """The route template: `/api/v2/telephony/calls/{channel_key}`, never the key itself."""
    template = req.uri_template
    if template:
        return str(template)
    if req.path.startswith("/static/"):
        return "/static/{file}"
    return UNMATCHED


def action_of(req: falcon.asgi.Request, route: str) -> str:
    """What the resource said the request does (`req.context.action`), else what its
    route does, else the HTTP method."""
    action = getattr(req.context, "action", None)
    if action:
        return str(action)
    return _ROUTE_ACTIONS.get(route) or req.method.lower()


class RequestObserver:
    """Falcon middleware: request metrics, one access log line per request, card stream counts.

    Goes after the request id middleware, whose id it logs.
    """

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.started = time.perf_counter()
        request_id = getattr(req.context, "request_id", None)
        if request_id:
            # Every log line of this request (and of its card stream) carries the id.
            REQUEST_ID.set(request_id)

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        started: float = getattr(req.context, "started", time.perf_counter())
        seconds = time.perf_counter() - started
        route = route_of(req)
        action = action_of(req, route)
        status = resp.status_code
        fields: dict[str, Any] = {
            "method": req.method,
            "route": route,
            "action": action,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            # The connection's client as uvicorn reports it: the peer, or the client a trusted
            # proxy (VATS_TRUSTED_PROXIES) names. Falcon puts it last, after whatever
            # X-Forwarded-For a client wrote itself.
            "client": req.remote_addr,
        }
        if resp.sse is not None:
            fields["stream"] = True
            resp.sse = _observed_stream(resp.sse, route, fields)
        # Counted and logged once the answer is on its way (the next turn of the loop, with
        # this request's context): neither is the client's to wait for.
        asyncio.get_running_loop().call_soon(_record_request, seconds, fields)


def _record_request(seconds: float, fields: dict[str, Any]) -> None:
    route, action, status = fields["route"], fields["action"], fields["status"]
    REQUESTS.labels(route, action, str(status)).inc()
    LATENCY.labels(route, action).observe(seconds)
    level = logging.ERROR if status >= 500 and status != 503 else logging.INFO
    access_log.log(level, "request", extra={"fields": fields})


async def _observed_stream(
    events: Any, route: str, request_fields: dict[str, Any]
) -> AsyncIterator[SSEvent | None]:
    started = time.perf_counter()
    sent = 0
    CARD_STREAMS.inc()
    try:
        async for event in events:
            if event is not None and event.event:
                CARD_EVENTS.labels(event.event).inc()
                sent += 1
            yield event
    finally:
        CARD_STREAMS.dec()
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
        access_log.info(
            "stream closed",
            extra={
                "fields": {
                    "route": route,
                    "action": request_fields["action"],
                    "events": sent,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                }
            },
        )


class MetricsResource:
    """GET /metrics: the Prometheus text format."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.action = "metrics"
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(REGISTRY)
