"""What every servicer method shares: the token, the storage runner, the deadline and the
status table.

A unary method is `Handler.unary(context, roles, work, reply)`: authenticate, check the
roles, run `work` on the storage executor (one hop, so the store never blocks the event
loop), convert its result with `reply`; a domain error becomes its gRPC status.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import grpc

from core import errors
from core.app import UseCases
from core.auth import Credentials, Principal, Role, credentials_of
from core.events import EventHub, Subscription
from core.rpc.encode import LinkMaker
from core.rpc.status import abort

T = TypeVar("T")
R = TypeVar("R")
U = TypeVar("U")

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

# Who may call: admins always may, so ADMIN names no further role.
ADMIN: tuple[Role, ...] = ()
SERVICE: tuple[Role, ...] = (Role.SERVICE,)
# Supervisors read everything a service or an employee reads, and change nothing of it.
READERS: tuple[Role, ...] = (Role.SERVICE, Role.EMPLOYEE, Role.SUPERVISOR)
SUPERVISORS: tuple[Role, ...] = (Role.SUPERVISOR,)


# Where the gateway says its client's request came from; the audit log records it.
CLIENT_ADDRESS = "x-client-address"

# Signs a recording's download link for a token: (recording id, token id) -> (path, expires).
LinkSigning = Callable[[str, str], tuple[str, datetime]]


def caller(context: Context) -> tuple[Credentials | None, str]:
    """The caller's credentials (`authorization: Bearer <token>` or `Ticket <ticket>`)
    and address: the gRPC peer's, preceded by the client's as a gateway forwards it.
    Core cannot tell a gateway from any other caller, so a forwarded address is never
    recorded without the peer that claimed it."""
    metadata = {
        key: value
        for key, value in context.invocation_metadata() or ()
        if key in ("authorization", CLIENT_ADDRESS) and isinstance(value, str)
    }
    peer = context.peer() or ""
    forwarded = metadata.get(CLIENT_ADDRESS, "").strip()[:200]
    address = f"{forwarded} via {peer}" if forwarded and peer else forwarded or peer
    return credentials_of(metadata.get("authorization")), address


def deadline_of(context: Context) -> float | None:
    """When the caller stops waiting (time.monotonic()), if it set a deadline."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class StorageRunner:
    """Runs blocking storage work off the event loop, on a pool of worker threads."""

    def __init__(self, workers: int, test_delay: float = 0.0) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="storage"
        )
        # Seconds added to each request's storage work by the test suite, as a slow
        # database would add them (VATS_TEST_STORAGE_DELAY_MS, read by core's settings).
        self.test_delay = test_delay

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)


class _Abandoned(Exception):
    """The caller's deadline passed while the job waited for a storage thread."""


class Handler:
    """Authentication, the storage runner and the error table, for every servicer."""

    def __init__(self, app: UseCases, runner: StorageRunner, links: LinkSigning | None) -> None:
        self.app = app
        self.runner = runner
        self._links = links

    def links_for(self, principal: Principal) -> LinkMaker | None:
        """The download links of what is handed to `principal`: bound to its token, so
        that a download through one is recorded as that token's (None: no links)."""
        sign = self._links
        if sign is None:
            return None
        return lambda recording_id: sign(recording_id, principal.token_id)

    async def call(
        self,
        context: Context,
        roles: tuple[Role, ...],
        work: Callable[[Principal], T],
        *,
        stream: bool = False,
        runner: StorageRunner | None = None,
    ) -> T:
        """Run `work` for the authenticated caller on the storage runner (or `runner`); a
        stream ticket is accepted (and used up) only for opening a live `stream`."""
        credentials, address = caller(context)
        deadline = deadline_of(context)
        on = runner or self.runner

        def job() -> T:
            # Under load jobs queue for the storage thread: one whose caller has given up
            # is skipped, so that it is not applied after its caller was told it failed.
            if passed(deadline):
                raise _Abandoned
            if on.test_delay:
                time.sleep(on.test_delay)
            principal = self.app.tokens.identify(credentials, stream=stream, address=address)
            principal.require(*roles)
            return work(principal)

        try:
            return await on.run(job)
        except errors.DomainError as error:
            await abort(context, error)
        except _Abandoned:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the work began"
            )
            raise AssertionError("abort returned") from None  # pragma: no cover

    async def unary(
        self,
        context: Context,
        roles: tuple[Role, ...],
        work: Callable[[Principal], R],
        reply: Callable[[R], T],
    ) -> T:
        """Authorize `roles`, run `work` on the storage runner, convert its result with `reply`."""
        return await self.call(context, roles, lambda principal: reply(work(principal)))

    async def principal(self, context: Context, roles: tuple[Role, ...]) -> Principal:
        """The caller of a live stream: by bearer token or stream ticket."""
        return await self.call(context, roles, lambda p: p, stream=True)


async def checked(context: Context, check: Callable[[], T]) -> T:
    """Run a request check on the loop; a domain error it raises ends the call with its status."""
    try:
        return check()
    except errors.DomainError as error:
        await abort(context, error)


async def watch(
    context: Context,
    hub: EventHub,
    principal: Principal,
    updates: Callable[[Subscription], AsyncIterator[U]],
    event: Callable[[U], T],
) -> AsyncIterator[T]:
    """A server stream of live updates, each converted by `event`.

    It subscribes first, then tells the client at once that the stream is accepted:
    every change after that moment reaches it. A revoked token ends it UNAUTHENTICATED.
    """
    subscription = hub.subscribe(principal.token_id)
    try:
        await context.send_initial_metadata(())
        async for update in updates(subscription):
            yield event(update)
    finally:
        hub.unsubscribe(subscription)
    if subscription.revoked:
        await abort(context, errors.Unauthenticated("the token was revoked or has expired"))
