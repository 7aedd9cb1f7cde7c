"""Core's one wiring point: opens the store, builds the use cases and the servicers, and serves."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import secrets
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import vats_settings
from core import domain, logs, rpc
from core.app import UseCases
from core.app.seed import apply_seed, load_seed
from core.board_stream import BoardFeed
from core.config import CoreConfig
from core.events import EventHub, EventStreams
from core.metrics import CoreMetrics, InstrumentedServer, LiveCalls, MetricsServer
from core.model import utc_now
from core.recordings import FileBlobStore, LinkSigner
from core.recordings.library import RecordingLibrary
from core.rpc.card_streams import add_call_service
from core.storage.port import Store
from core.storage.sqlite import DATABASE_FILE, SqliteStore
from telephony.v1 import (
    call_service_pb2,
    channel_service_pb2,
    channel_service_pb2_grpc,
    directory_service_pb2,
    directory_service_pb2_grpc,
)
from vats_lifetime import settle_garbage_collector

log = logging.getLogger("vats.core")

# Calls gRPC keeps waiting for the server to take them up (its default cancels past 1,000).
MAX_PENDING_CALLS = 20_000
# A storage check that takes longer than this counts as failed.
STORAGE_CHECK_TIMEOUT = 5.0
# How often open streams' tokens are checked: a token revoked on another core, or one
# that expired, ends its streams here within this many seconds.
STREAM_TOKEN_CHECK_SECONDS = 5.0

SERVICE_NAMES = (
    call_service_pb2.DESCRIPTOR.services_by_name["CallService"].full_name,
    channel_service_pb2.DESCRIPTOR.services_by_name["ChannelService"].full_name,
    directory_service_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name,
)


class DataDirInUse(RuntimeError):
    """Another core process already writes this data directory."""


def lock_data_dir(data_dir: Path) -> int:
    """Hold the data directory for this process: one core writes a SQLite file.
    The lock goes with the process, however it ends."""
    fd = os.open(data_dir / "core.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(
            f"another core already runs on the data directory {data_dir}; "
            "stop it first, or give this one its own VATS_DATA_DIR"
        ) from None
    return fd


def open_store(config: CoreConfig) -> Store:
    """MongoDB when VATS_MONGODB_URI is set, else the SQLite file in the data directory."""
    if config.mongodb_uri:
        from core.storage.mongo import MongoStore

        return MongoStore.connect(config.mongodb_uri, config.mongodb_db)
    data_dir = Path(config.data_dir)
    files = FileBlobStore(data_dir)
    files.discard_incomplete()
    return SqliteStore(data_dir / DATABASE_FILE, files)


def link_secret(config: CoreConfig) -> bytes:
    """VATS_LINK_SECRET, or one made at the first start and kept with the data, so
    that signed links work for their whole lifetime across restarts."""
    if config.link_secret:
        return config.link_secret.encode()
    path = Path(config.data_dir) / "link-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as file:
        file.write(secrets.token_hex(32).encode())
        file.flush()
        os.fsync(file.fileno())
    return path.read_bytes()


class Core:
    """Everything one core process runs, wired together."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        data_dir = Path(config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self._data_lock = None if config.mongodb_uri else lock_data_dir(data_dir)
        self.store = open_store(config)
        self.runner = rpc.StorageRunner(
            config.storage_workers, test_delay=config.test_storage_delay_ms / 1000
        )
        self.signer = LinkSigner(
            hashlib.sha256(link_secret(config)).digest(), config.link_ttl_seconds
        )
        self.library = RecordingLibrary(self.store, max_bytes=config.max_record_mb * 1024 * 1024)
        self.app = UseCases.over(
            self.store,
            region=config.default_region,
            timezone=config.timezone,
            public_url=config.public_url,
            recordings=self.library,
        )
        self.cards = self.app.cards
        self.blob_runner = rpc.StorageRunner(4)
        # Batches of PBX commands (SubmitCalls) run one after another on their own thread:
        # two at once would only hand the writer to and fro between them.
        self.batch_runner = rpc.StorageRunner(1, test_delay=self.runner.test_delay)
        self.handler = rpc.Handler(self.app, self.runner, links=self.link)
        self.health = health.aio.HealthServicer()
        self.hub: EventHub | None = None
        self.expiry = domain.ExpiryPolicy(
            ringing=timedelta(seconds=config.ringing_expiry_seconds),
            in_progress=timedelta(seconds=config.in_progress_expiry_seconds),
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.follower: Any = None
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.metrics = CoreMetrics()
        self.metrics_server: MetricsServer | None = None
        self.storage_ok = True
        self.stream_token_check_seconds = STREAM_TOKEN_CHECK_SECONDS

    def link(self, recording_id: str, token_id: str) -> tuple[str, datetime]:
        """A signed download path for a recording, bound to the token it is handed to,
        and when it expires."""
        path, expires = self.signer.signed_path(recording_id, time.time(), token_id)
        return path, datetime.fromtimestamp(expires, UTC)

    def prepare(self) -> None:
        """Blocking start-up work: schema and indexes, recordings, the seed."""
        self.store.prepare()
        if self.store.single_writer:
            # Nobody else uploads meanwhile: what files and records disagree on is left over.
            self.library.reconcile()
        if self.config.seed_path:
            apply_seed(self.app, load_seed(Path(self.config.seed_path)), self.library)

    async def start(self) -> int:
        await self.runner.run(self.prepare)
        self.hub = EventHub(asyncio.get_running_loop())
        self.app.tokens.on_revoked = self.hub.revoke
        if isinstance(self.store, SqliteStore):
            self.metrics.follow_commits(self.store.commit_stats)
        if self.store.single_writer or self.config.event_source == "inprocess":
            # Every change passes through this core: the call gauges follow its events.
            live = LiveCalls()
            await self.runner.run(live.load, self.store)
            self.metrics.follow_live_calls(live)
            self.store.set_event_sink(self.metrics.counting_sink(self.hub, live))
        else:
            from core.storage.mongo.changes import ChangeStreamFollower

            self.store.set_event_sink(self.metrics.counting_sink(None, None))
            # Every core, this one included, learns of events from the change stream.
            self.follower = ChangeStreamFollower(
                self.store.events_collection,  # type: ignore[attr-defined]
                self.hub,
            )
            self.follower.start()
        hub = self.hub
        self.metrics.count_subscribers(lambda: hub.subscriber_count)
        streams = EventStreams(self.cards, self.hub, self.runner)
        board_feed = BoardFeed(self.app.board, self.hub, self.runner)
        # A marked callback changes the board's figures without a call event.
        self.app.callbacks.on_marked = board_feed.changed
        plain = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                # Calls arriving faster than the loop takes them up (thousands of card
                # streams opening at once) wait for it instead of being cancelled.
                ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
                ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        # Every RPC counted, timed and logged (see InstrumentedServer).
        server = InstrumentedServer(plain, self.metrics)
        # Its card streams send messages encoded once for all their subscribers.
        add_call_service(
            rpc.CallServicer(
                self.handler,
                streams,
                self.library,
                self.signer,
                self.blob_runner,
                self.batch_runner,
                board_feed,
            ),
            server,
        )
        channel_service_pb2_grpc.add_ChannelServiceServicer_to_server(
            rpc.ChannelServicer(self.handler), server
        )
        directory_service_pb2_grpc.add_DirectoryServiceServicer_to_server(
            rpc.DirectoryServicer(self.handler), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self.port = server.add_insecure_port(self.config.grpc_addr)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.config.grpc_addr}")
        await server.start()
        self.server = server
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._tasks.append(asyncio.create_task(self._sweep_expired()))
        self._tasks.append(asyncio.create_task(self._sweep_recordings()))
        self._tasks.append(asyncio.create_task(self._watch_storage()))
        self._tasks.append(asyncio.create_task(self._end_streams_of_invalid_tokens()))
        if self.config.metrics_addr:
            try:
                self.metrics_server = self.metrics.serve(self.config.metrics_addr)
            except OSError as error:
                # Calls matter more than their metrics: core serves on without them.
                log.error("metrics endpoint not started on %s: %s", self.config.metrics_addr, error)
            else:
                host = self.config.metrics_addr.rpartition(":")[0]
                log.info("metrics on http://%s:%d/metrics", host, self.metrics_server.port)
        return self.port

    def check_storage(self) -> None:
        """Blocking: ping the database (raises when it is unreachable), then refresh
        the call gauges when other cores write too."""
        self.store.ping()
        if self.follower is not None:
            try:
                self.metrics.refresh_state(self.store)
            except Exception:
                log.warning("refreshing the call gauges failed", exc_info=True)

    async def _watch_storage(self) -> None:
        """CallService and the other telephony services are NOT_SERVING while storage
        fails its check; the overall "" status stays SERVING (the process is alive)."""
        pending: asyncio.Future[None] | None = None
        while True:
            if pending is None:
                # One check at a time: a hung ping must not pile up on the executor.
                pending = asyncio.ensure_future(self.runner.run(self.check_storage))
            done, _ = await asyncio.wait({pending}, timeout=STORAGE_CHECK_TIMEOUT)
            error: BaseException | None = None
            if pending in done:
                error = pending.exception()
                pending = None
            else:
                error = TimeoutError("the storage check did not finish in time")
            await self._set_storage_ok(error)
            await asyncio.sleep(self.config.storage_check_seconds)

    async def _set_storage_ok(self, error: BaseException | None) -> None:
        ok = error is None
        self.metrics.storage_up.set(1 if ok else 0)
        if ok == self.storage_ok:
            return
        self.storage_ok = ok
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ok
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in SERVICE_NAMES:
            await self.health.set(name, status)
        if ok:
            log.info("storage is reachable again; serving")
        else:
            log.error("storage check failed (%s); not serving", error)

    async def _end_streams_of_invalid_tokens(self) -> None:
        while True:
            await asyncio.sleep(self.stream_token_check_seconds)
            hub = self.hub
            if hub is None or not hub.subscriber_count:
                continue
            try:
                gone = await self.runner.run(self.app.tokens.no_longer_valid, hub.token_ids())
            except Exception:
                log.exception("checking the tokens of open streams failed; retrying")
                continue
            for token_id in gone:
                hub.revoke(token_id)

    async def _sweep_expired(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_seconds)
            try:
                count = await self.runner.run(lambda: self.cards.expire_stale_calls(self.expiry))
                if count:
                    log.info("expired the cards of %d stale calls", count)
            except Exception:
                log.exception("expiry sweep failed; retrying at the next interval")

    async def _sweep_recordings(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_seconds)
            try:
                count = await self.runner.run(self.library.sweep_unattached)
                await self.runner.run(self.store.remove_expired, utc_now())
                if count:
                    log.info("removed %d recordings no call took", count)
            except Exception:
                log.exception("recording sweep failed; retrying at the next interval")

    async def stop(self, grace: float = 5.0) -> None:
        for task in self._tasks:
            task.cancel()
        await self.health.enter_graceful_shutdown()
        if self.follower is not None:
            self.follower.stop()
        if self.hub is not None:
            # Streams end with OK instead of being cut off at the end of the grace period.
            self.hub.close()
        if self.server is not None:
            await self.server.stop(grace)
        if self.metrics_server is not None:
            self.metrics_server.close()
        self.runner.shutdown()
        self.blob_runner.shutdown()
        self.batch_runner.shutdown()
        self.store.close()
        if self._data_lock is not None:
            os.close(self._data_lock)
            self._data_lock = None


async def serve(config: CoreConfig) -> None:
    core = Core(config)
    port = await core.start()
    settle_garbage_collector()
    where = "MongoDB" if core.store.kind == "mongodb" else f"SQLite in {config.data_dir}"
    log.info("core listening on %s (port %d), data in %s", config.grpc_addr, port, where)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("core stopping")
    await core.stop()


def main() -> None:
    config = vats_settings.load(CoreConfig.from_env)
    logs.setup(config.log_level)
    try:
        # uvloop, as the gateway's: each request wakes the loop several times (the RPC, the
        # storage thread's result, its events), and each wake costs less (create_call at rest:
        # 0.2-1.6 ms less in three paired runs against asyncio's loop).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(config))
    except DataDirInUse as error:
        log.error("%s", error)
        raise SystemExit(1) from None
