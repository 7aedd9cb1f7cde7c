"""Core's Prometheus metrics, and the gRPC interceptor that measures and logs every RPC.

Each Core has its own registry (tests run several in one process). The gauges
of live calls are kept from the events a core publishes when it sees every
change, else refreshed by indexed count queries on a timer; never a scan per scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import grpc
import grpc.aio
from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from core.domain import Status
from core.logs import REQUEST_ID, RPC_FIELDS
from core.model import PublishedEvent
from core.storage.port import EventSink, Store

if TYPE_CHECKING:
    from core.storage.sqlite.store import CommitStats

log = logging.getLogger("vats.core.rpc")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Probes would drown the log: their lines are debug-level (metrics still count them).
_QUIET_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")
_STREAMS_OF_EVENTS = {
    "/telephony.v1.CallService/WatchCallCards": "cards",
    "/telephony.v1.CallService/WatchCalls": "calls",
}
_UPLOAD_METHOD = "/telephony.v1.CallService/UploadRecord"
_SERVER_FAULTS = frozenset(
    {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}
)


class CoreMetrics:
    """Every metric core exports (names in README, "Operations")."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(GC_COLLECTOR)
        r = self.registry
        self.rpcs = Counter(
            "vats_core_rpcs_total",
            "RPCs handled, by service, method and gRPC status code.",
            ["service", "method", "code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "vats_core_rpc_duration_seconds",
            "Time to handle an RPC (streams: their whole life), by service and method.",
            ["service", "method"],
            registry=r,
        )
        self.active_calls = Gauge(
            "vats_core_active_calls",
            f"Calls with an active status ({', '.join(s for s in Status if s.is_active)}).",
            registry=r,
        )
        self.visible_cards = Gauge(
            "vats_core_visible_cards",
            "Calls whose card is shown to at least one employee now.",
            registry=r,
        )
        self.subscribers = Gauge(
            "vats_core_stream_subscribers",
            "Card and call streams connected to this core.",
            registry=r,
        )
        self.events_published = Counter(
            "vats_core_events_published_total",
            "Call events this core wrote to the event log.",
            registry=r,
        )
        self.events_delivered = Counter(
            "vats_core_events_delivered_total",
            "Events sent to stream clients, by stream (cards, calls).",
            ["stream"],
            registry=r,
        )
        self.recordings_stored = Counter(
            "vats_core_recordings_stored_total", "Recordings uploaded and stored.", registry=r
        )
        self.recording_bytes_stored = Counter(
            "vats_core_recording_bytes_stored_total", "Bytes of recordings stored.", registry=r
        )
        self.storage_up = Gauge(
            "vats_core_storage_up", "1 when the last storage check succeeded, else 0.", registry=r
        )

    def count_subscribers(self, count: Callable[[], int]) -> None:
        self.subscribers.set_function(lambda: float(count()))

    def follow_live_calls(self, live: LiveCalls) -> None:
        """The call gauges read from `live` (kept from this core's own events)."""
        self.active_calls.set_function(lambda: float(live.active))
        self.visible_cards.set_function(lambda: float(live.visible))

    def refresh_state(self, store: Store) -> None:
        """Blocking: the live calls as stored (when other cores write too)."""
        with store.reading() as uow:
            active = uow.calls.active()
        self.active_calls.set(len(active))
        self.visible_cards.set(sum(1 for c in active if c.viewers))

    def counting_sink(self, inner: EventSink | None, live: LiveCalls | None) -> EventSink:
        """An event sink that counts what it publishes (and keeps `live` current)."""
        return _CountingSink(self.events_published, inner, live)

    def follow_commits(self, stats: Callable[[], CommitStats]) -> None:
        """The SQLite store's group commits, read from `stats` at each scrape."""
        self.registry.register(_CommitCollector(stats))

    def serve(self, addr: str) -> MetricsServer:
        """Starts the /metrics HTTP endpoint on `addr`, a host:port the settings checked
        (port 0 picks one)."""
        host, _, port = addr.rpartition(":")
        server, _ = start_http_server(int(port), host.strip("[]"), registry=self.registry)
        return MetricsServer(server)


class MetricsServer:
    def __init__(self, server: WSGIServer) -> None:
        self._server = server

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _CommitCollector(Collector):
    def __init__(self, stats: Callable[[], CommitStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield CounterMetricFamily(
            "vats_core_sqlite_commits",
            "Transactions the SQLite store committed (each one sync of its log).",
            value=stats.commits,
        )
        yield CounterMetricFamily(
            "vats_core_sqlite_units_committed",
            "Units of work those transactions stored: more than one each under group commit.",
            value=stats.units,
        )


class LiveCalls:
    """Active calls and shown cards, kept current from the events this core publishes.

    Exact when every change passes through this core (SQLite, or a single
    core with in-process events); costs one query at start, none per change.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shown: dict[int, bool] = {}  # active call id -> its card is shown

    def load(self, store: Store) -> None:
        """Blocking: the active calls as stored now."""
        with store.reading() as uow:
            shown = {c.call_id: bool(c.viewers) for c in uow.calls.active()}
        with self._lock:
            self._shown = shown

    def observe(self, event: PublishedEvent) -> None:
        call = event.view.call
        with self._lock:
            if call.status.is_active:
                self._shown[call.call_id] = bool(call.viewers)
            else:
                self._shown.pop(call.call_id, None)

    @property
    def active(self) -> int:
        return len(self._shown)

    @property
    def visible(self) -> int:
        with self._lock:
            return sum(self._shown.values())


class _CountingSink:
    def __init__(self, counter: Counter, inner: EventSink | None, live: LiveCalls | None) -> None:
        self._counter = counter
        self._inner = inner
        self._live = live

    def publish(self, event: PublishedEvent) -> None:
        self._counter.inc()
        if self._live is not None:
            self._live.observe(event)
        if self._inner is not None:
            self._inner.publish(event)


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


class _Rpc:
    """One RPC being measured: ends with one metrics sample and one log line."""

    def __init__(self, metrics: CoreMetrics, method: str, request_id: str) -> None:
        self.metrics = metrics
        self.method = method
        service, _, name = method.lstrip("/").partition("/")
        self.service, self.name = service, name
        self.request_id = request_id
        self.started = time.perf_counter()
        self.messages = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def finish(
        self,
        code: grpc.StatusCode,
        noted: dict[str, object] | None = None,
        seconds: float | None = None,
    ) -> None:
        """`noted`: what the servicer added to the line (core.logs.note_rpc); `seconds`: the
        RPC's duration, when it ended before this is called."""
        if seconds is None:
            seconds = self.elapsed()
        m = self.metrics
        m.rpcs.labels(self.service, self.name, code.name).inc()
        m.rpc_seconds.labels(self.service, self.name).observe(seconds)
        stream = _STREAMS_OF_EVENTS.get(self.method)
        if stream is not None and self.messages:
            m.events_delivered.labels(stream).inc(self.messages)
        if code in _SERVER_FAULTS:
            level = logging.ERROR
        elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            level = logging.WARNING
        elif self.service in _QUIET_SERVICES:
            level = logging.DEBUG
        else:
            level = logging.INFO
        fields: dict[str, object] = {
            "request_id": self.request_id,
            "method": self.method,
            "code": code.name,
            "duration_ms": round(seconds * 1000, 2),
        }
        if stream is not None:
            fields["messages"] = self.messages
        if noted:
            fields.update(noted)
        log.log(level, "rpc", extra={"fields": fields})


def _code_of(
    context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None
) -> grpc.StatusCode:
    if error is None or isinstance(error, grpc.aio.AbortError):
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            return code
        if isinstance(code, int) and code in _CODES_BY_NUMBER:
            return _CODES_BY_NUMBER[code]
        return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
    if isinstance(error, Exception):
        return grpc.StatusCode.UNKNOWN
    # CancelledError, GeneratorExit: the client went away or the server is stopping.
    return grpc.StatusCode.CANCELLED


_CODES_BY_NUMBER = {member.value[0]: member for member in grpc.StatusCode}

# A method handler's four shapes: which attribute holds its behaviour, how a handler of that
# shape is made, and whether it answers with a stream.
_HANDLER_KINDS: tuple[tuple[str, Callable[..., grpc.RpcMethodHandler], bool], ...] = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
)


class InstrumentedServer(grpc.aio.Server):
    """A grpc.aio server whose RPCs are counted, timed and logged with the caller's
    x-request-id (never other metadata). Each method handler is wrapped once, as it is
    registered: a server interceptor runs a coroutine and makes a new handler for every
    call (GetCall under load: about a tenth more requests a second without it)."""

    def __init__(self, server: grpc.aio.Server, metrics: CoreMetrics) -> None:
        self._server = server
        self._metrics = metrics

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]
    ) -> None:
        self._server.add_generic_rpc_handlers(
            [_InstrumentedGenericHandler(h, self._instrument) for h in generic_rpc_handlers]
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name,
            {
                name: self._instrument(handler, f"/{service_name}/{name}")
                for name, handler in method_handlers.items()
            },
        )

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    # The signature grpc.aio.Server declares.
    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return await self._server.wait_for_termination(timeout)

    def _instrument(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        for kind, make_handler, streams in _HANDLER_KINDS:
            behavior = getattr(handler, kind)
            if behavior is not None:
                wrap = self._stream if streams else self._unary
                return make_handler(
                    wrap(behavior, method),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        metrics = self._metrics

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            rpc = _Rpc(metrics, method, _request_id(context.invocation_metadata()))
            REQUEST_ID.set(rpc.request_id)
            noted: dict[str, object] = {}
            RPC_FIELDS.set(noted)
            # The code, not the exception: kept in this frame, which its traceback holds, an
            # exception would make a cycle of everything the RPC's frames hold.
            code: grpc.StatusCode | None = None
            try:
                response = await behavior(request, context)
            except BaseException as error:
                code = _code_of(context, error)
                raise
            finally:
                # Counted and logged once the reply is on its way (the next turn of the loop,
                # with this RPC's context): neither is the caller's to wait for.
                asyncio.get_running_loop().call_soon(
                    rpc.finish,
                    _code_of(context, None) if code is None else code,
                    noted,
                    rpc.elapsed(),
                )
            if method == _UPLOAD_METHOD and response is not None:
                metrics.recordings_stored.inc()
                metrics.recording_bytes_stored.inc(response.recording.size_bytes)
            return response

        return unary

    def _stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        metrics = self._metrics
        if not inspect.isasyncgenfunction(behavior):
            # A handler that writes with context.write() and returns None.
            return self._unary(behavior, method)

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            rpc = _Rpc(metrics, method, _request_id(context.invocation_metadata()))
            REQUEST_ID.set(rpc.request_id)
            # The code, not the exception (see _unary): a stream ended by its client would
            # otherwise leave all it held to the cyclic collector.
            code: grpc.StatusCode | None = None
            try:
                # aclosing: the servicer's own cleanup runs now, not at garbage collection.
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        rpc.messages += 1
                        yield response
            except BaseException as error:
                code = _code_of(context, error)
                raise
            finally:
                rpc.finish(_code_of(context, None) if code is None else code)

        return stream


class _InstrumentedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come instrumented, each wrapped once."""

    def __init__(
        self,
        inner: grpc.GenericRpcHandler,
        instrument: Callable[[grpc.RpcMethodHandler, str], grpc.RpcMethodHandler],
    ) -> None:
        self._inner = inner
        self._instrument = instrument
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None  # an unknown method: gRPC answers UNIMPLEMENTED
        method: str = handler_call_details.method
        known = self._wrapped.get(method)
        if known is None or known[0] is not handler:
            known = self._wrapped[method] = (handler, self._instrument(handler, method))
        return known[1]
