#!/usr/bin/env python3
"""Queueing relay between Kamailio and a vats-bridge channel URL (standard library only).

Kamailio's http_client is synchronous and never retries, so kamailio.cfg hands every
event to this relay on loopback and gets 202 at once. The relay delivers the events to
the channel URL in arrival order per Call-ID, retries 429 / 503 / connection errors with
exponential backoff honouring Retry-After, sends an Idempotency-Key per event so a retry
is never applied twice, and attaches the call's recording to the final `answered` update.
See README.md beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import email.utils
import hashlib
import heapq
import itertools
import json
import logging
import mimetypes
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("vats-relay")

RECORDING_SUFFIXES = (".wav", ".mp3", ".ogg", ".m4a")
# Statuses worth another attempt: rate limited, core unavailable, or a proxy in front
# of the gateway that lost it for a moment.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 300.0
RECORDING_POLL = 0.2


def recording_name(call_id: str) -> str:
    """The file name stem under which a call's recording is expected."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id)


def find_recording(directory: Path | None, call_id: str) -> Path | None:
    if directory is None:
        return None
    stem = recording_name(call_id)
    for suffix in RECORDING_SUFFIXES:
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


@dataclasses.dataclass
class Event:
    seq: int
    fields: dict[str, Any]
    kind: str = "event"  # "event", or "recording": a late recording for an answered call
    deadline: float = 0.0  # for "recording": wall-clock time to stop waiting for the file
    attempts: int = 0

    @property
    def call_id(self) -> str:
        return str(self.fields["pbx_call_id"])

    @property
    def idempotency_key(self) -> str:
        digest = hashlib.sha256(self.call_id.encode()).hexdigest()[:32]
        action = self.fields.get("action", "")
        status = self.fields.get("call_status", "")
        suffix = "-recording" if self.kind == "recording" else ""
        return f"kamailio-{digest}-{action}-{status}{suffix}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            seq=int(data["seq"]),
            fields=dict(data["fields"]),
            kind=str(data.get("kind", "event")),
            deadline=float(data.get("deadline", 0.0)),
        )


def parse_event(body: bytes, content_type: str) -> dict[str, Any]:
    """An event from Kamailio (a form) or any other producer (JSON) as contract fields."""
    fields: dict[str, Any] = {}
    if content_type.split(";")[0].strip().lower() == "application/json":
        data = json.loads(body.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("the event must be a JSON object")
        fields = {str(k): v for k, v in data.items()}
    else:
        users: list[str] = []
        for key, value in urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True):
            if key in ("pbx_user_ids", "pbx_user_ids[]"):
                users.extend(u for u in value.split(",") if u.strip())
            else:
                fields[key] = value
        if users:
            fields["pbx_user_ids"] = users
    users_field = fields.get("pbx_user_ids")
    if isinstance(users_field, str):
        fields["pbx_user_ids"] = [u for u in users_field.split(",") if u.strip()]
    fields.pop("seq", None)
    fields = {k: v for k, v in fields.items() if v not in ("", None, [])}
    if not fields.get("action") or not fields.get("pbx_call_id"):
        raise ValueError("an event needs action and pbx_call_id")
    return fields


def encode_multipart(fields: dict[str, Any], file: Path | None) -> tuple[bytes, str]:
    boundary = f"vats-relay-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for key, value in fields.items():
        values = value if isinstance(value, list) else [value]
        name = f"{key}[]" if isinstance(value, list) else key
        for item in values:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{item}\r\n".encode()
            )
    if file is not None:
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="audio_record"; '
            f'filename="{file.name}"\r\nContent-Type: {mime}\r\n\r\n'.encode()
            + file.read_bytes()
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclasses.dataclass
class Outcome:
    """What one delivery attempt came to."""

    done: bool  # delivered, or refused for good
    status: int | None  # HTTP status, None for a connection error
    retry_after: float | None = None
    detail: str = ""


class Relay:
    """Per-Call-ID queues drained by a few workers; a call waiting out a backoff holds none."""

    def __init__(
        self,
        channel_url: str,
        *,
        recordings_dir: Path | None = None,
        recording_wait: float = 10.0,
        spool_dir: Path | None = None,
        max_attempts: int = 0,
        workers: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self.channel_url = channel_url
        self.recordings_dir = recordings_dir
        self.recording_wait = recording_wait
        self.spool_dir = spool_dir
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.delivered = 0
        self.failed = 0
        self.rejected = 0
        self._lock = threading.Condition()
        self._queues: dict[str, deque[Event]] = {}
        self._busy: set[str] = set()
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._seq = itertools.count(1)
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"deliver-{i}", daemon=True)
            for i in range(workers)
        ]
        if spool_dir is not None:
            spool_dir.mkdir(parents=True, exist_ok=True)
            self._restore()

    # -- queueing -------------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 1)

    def submit(self, fields: dict[str, Any]) -> Event:
        with self._lock:
            event = Event(seq=next(self._seq), fields=fields)
            self._spool(event)
            self._append(event)
            return event

    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def status(self) -> dict[str, int]:
        with self._lock:
            return {
                "pending": sum(len(q) for q in self._queues.values()),
                "delivered": self.delivered,
                "failed": self.failed,
                "rejected": self.rejected,
            }

    def _append(self, event: Event) -> None:
        queue = self._queues.setdefault(event.call_id, deque())
        queue.append(event)
        if len(queue) == 1 and event.call_id not in self._busy:
            self._schedule(event.call_id, time.monotonic())

    def _schedule(self, call_id: str, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._order), call_id))
        self._lock.notify()

    def _next_due(self) -> str | None:
        """Blocks until a call's head event is due; None when stopping."""
        with self._lock:
            while not self._stopping:
                if self._heap:
                    due, _, call_id = self._heap[0]
                    wait = due - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        self._busy.add(call_id)
                        return call_id
                    self._lock.wait(wait)
                else:
                    self._lock.wait()
            return None

    def _work(self) -> None:
        while (call_id := self._next_due()) is not None:
            with self._lock:
                event = self._queues[call_id][0]
            try:
                delay = self._process(event)
            except Exception:
                # A bug must not leave the call marked busy forever: log and retry later.
                log.exception("unexpected error handling %s", self._describe(event))
                delay = self.max_delay
            with self._lock:
                self._busy.discard(call_id)
                queue = self._queues[call_id]
                if delay is None:
                    queue.popleft()
                    self._unspool(event)
                    if not queue:
                        del self._queues[call_id]
                        continue
                    delay = 0.0
                self._schedule(call_id, time.monotonic() + delay)

    # -- delivery -------------------------------------------------------------

    def _process(self, event: Event) -> float | None:
        """Handles the head event of its call: None when it is finished, else the delay
        before it is tried again."""
        if event.kind == "recording":
            return self._process_recording(event)
        recording = None
        if self._is_final_answer(event):
            recording = find_recording(self.recordings_dir, event.call_id)
        outcome = self._attempt(event, recording)
        if not outcome.done:
            return self._retry_delay(event, outcome)
        delivered = outcome.status is not None and 200 <= outcome.status < 300
        awaited = self.recordings_dir is not None and recording is None
        if delivered and awaited and self._is_final_answer(event):
            self._follow_with_recording(event)
        return None

    def _is_final_answer(self, event: Event) -> bool:
        return (
            event.kind == "event"
            and event.fields.get("action") == "update_call"
            and event.fields.get("call_status") == "answered"
        )

    def _follow_with_recording(self, event: Event) -> None:
        """The phone finishes its file after the BYE: wait for it behind the final update."""
        follow = Event(
            seq=next(self._seq),
            fields={
                "action": "update_call",
                "pbx_call_id": event.fields["pbx_call_id"],
                "call_status": "answered",
            },
            kind="recording",
            deadline=time.time() + self.recording_wait,
        )
        with self._lock:
            self._spool(follow)
            # Inserted right behind the event being delivered, ahead of anything later.
            self._queues[event.call_id].insert(1, follow)

    def _process_recording(self, event: Event) -> float | None:
        recording = find_recording(self.recordings_dir, event.call_id)
        if recording is None:
            if time.time() < event.deadline:
                return RECORDING_POLL
            log.info("no recording for call %s", event.call_id)
            return None
        outcome = self._attempt(event, recording)
        if not outcome.done:
            return self._retry_delay(event, outcome)
        return None

    def _retry_delay(self, event: Event, outcome: Outcome) -> float | None:
        if self.max_attempts and event.attempts >= self.max_attempts:
            with self._lock:
                self.failed += 1
            log.error(
                "gave up on %s after %d attempts: %s",
                self._describe(event),
                event.attempts,
                outcome.detail,
            )
            return None
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (event.attempts - 1))
        backoff *= random.uniform(0.8, 1.0)
        delay = max(backoff, outcome.retry_after or 0.0)
        log.warning(
            "retrying %s in %.1fs (attempt %d: %s)",
            self._describe(event),
            delay,
            event.attempts,
            outcome.detail,
        )
        return delay

    def _attempt(self, event: Event, recording: Path | None) -> Outcome:
        event.attempts += 1
        try:
            body, content_type = encode_multipart(event.fields, recording)
        except OSError as exc:
            # The recording vanished between the check and the read: send without it.
            log.warning("recording of call %s unreadable: %s", event.call_id, exc)
            recording = None
            body, content_type = encode_multipart(event.fields, None)
        request = urllib.request.Request(
            self.channel_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": content_type,
                "Idempotency-Key": event.idempotency_key,
                "User-Agent": "vats-kamailio-relay/1",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
                response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            text = exc.read().decode("utf-8", "replace")[:500]
            retry_after = retry_after_seconds(exc.headers.get("Retry-After"))
            if status in RETRY_STATUSES or (status == 409 and "idempotency_conflict" in text):
                return Outcome(False, status, retry_after, f"HTTP {status}")
            with self._lock:
                self.rejected += 1
            log.error("refused %s: HTTP %d %s", self._describe(event), status, text)
            return Outcome(True, status, None, text)
        except (OSError, ValueError) as exc:
            return Outcome(False, None, None, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.delivered += 1
        log.info(
            "delivered %s%s (attempt %d)",
            self._describe(event),
            " with recording" if recording else "",
            event.attempts,
        )
        return Outcome(True, status)

    @staticmethod
    def _describe(event: Event) -> str:
        fields = event.fields
        return f"{fields.get('action')} {fields.get('call_status', 'ringing')} call={event.call_id}"

    # -- spool ----------------------------------------------------------------

    def _spool(self, event: Event) -> None:
        if self.spool_dir is None:
            return
        data = json.dumps(event.to_json()).encode()
        fd, tmp = tempfile.mkstemp(dir=self.spool_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.spool_dir / f"{event.seq:012d}.json")

    def _unspool(self, event: Event) -> None:
        if self.spool_dir is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.spool_dir / f"{event.seq:012d}.json").unlink()

    def _restore(self) -> None:
        assert self.spool_dir is not None
        events = []
        for path in sorted(self.spool_dir.glob("*.json")):
            try:
                events.append(Event.from_json(json.loads(path.read_text())))
            except (ValueError, KeyError, OSError) as exc:
                log.error("skipping unreadable spooled event %s: %s", path.name, exc)
        for tmp in self.spool_dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        events.sort(key=lambda e: e.seq)
        self._seq = itertools.count((events[-1].seq + 1) if events else 1)
        with self._lock:
            for event in events:
                self._append(event)
        if events:
            log.info("restored %d undelivered events", len(events))


class Handler(BaseHTTPRequestHandler):
    server: RelayServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        if self.path.split("?")[0] not in ("/events", "/events/"):
            self._reply(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            fields = parse_event(body, self.headers.get("Content-Type", ""))
        except (ValueError, UnicodeDecodeError) as exc:
            self._reply(400, {"error": str(exc)})
            return
        event = self.server.relay.submit(fields)
        self._reply(202, {"queued": event.seq})

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/status":
            self._reply(200, self.server.relay.status())
        else:
            self._reply(404, {"error": "not found"})

    def _reply(self, code: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class RelayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], relay: Relay) -> None:
        super().__init__(address, Handler)
        self.relay = relay


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", default=env("VATS_RELAY_LISTEN", "127.0.0.1:5081"))
    parser.add_argument("--channel-url", default=env("VATS_CHANNEL_URL"))
    parser.add_argument("--recordings-dir", default=env("VATS_RECORDINGS_DIR"))
    parser.add_argument(
        "--recording-wait", type=float, default=float(env("VATS_RECORDING_WAIT", "10"))
    )
    parser.add_argument("--spool-dir", default=env("VATS_SPOOL_DIR"))
    parser.add_argument("--max-attempts", type=int, default=int(env("VATS_MAX_ATTEMPTS", "0")))
    parser.add_argument("--retry-base", type=float, default=float(env("VATS_RETRY_BASE", "0.5")))
    parser.add_argument("--retry-max", type=float, default=float(env("VATS_RETRY_MAX", "30")))
    parser.add_argument("--log-level", default=env("VATS_RELAY_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if not args.channel_url:
        parser.error("--channel-url (or VATS_CHANNEL_URL) is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s vats-relay %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    host, _, port = args.listen.rpartition(":")
    relay = Relay(
        args.channel_url,
        recordings_dir=Path(args.recordings_dir) if args.recordings_dir else None,
        recording_wait=args.recording_wait,
        spool_dir=Path(args.spool_dir) if args.spool_dir else None,
        max_attempts=args.max_attempts,
        base_delay=args.retry_base,
        max_delay=args.retry_max,
    )
    server = RelayServer((host.strip("[]") or "127.0.0.1", int(port)), relay)
    relay.start()

    def shutdown(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    bound_host, bound_port = server.server_address[:2]
    print(f"vats-relay listening on http://{bound_host!s}:{bound_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        relay.stop()
        left = relay.pending()
        if left:
            where = "kept in the spool" if relay.spool_dir else "dropped"
            log.warning("stopping with %d events not delivered (%s)", left, where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
