"""The per-channel rate limit: the token bucket on its own, and over HTTP."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.config import Config
from gateway.ratelimit import RateLimiter
from tests.conftest import LiveStack
from tests.hardening.support import Core, call_body, error_of, started


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_of_twice_the_rate_then_one_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(5, clock=clock)
    assert [limiter.acquire("k") for _ in range(10)] == [0.0] * 10
    wait = limiter.acquire("k")
    assert wait == pytest.approx(0.2)
    clock.now += 0.2
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") > 0


def test_refused_requests_do_not_push_the_wait_further() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    limiter.acquire("k")
    limiter.acquire("k")
    for _ in range(100):
        assert limiter.acquire("k") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.acquire("k") == 0.0


def test_channels_have_buckets_of_their_own() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    assert limiter.acquire("a") == limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert RateLimiter.retry_after(0.01) == 1
    assert RateLimiter.retry_after(1.0) == 1
    assert RateLimiter.retry_after(1.2) == 2
    limiter = RateLimiter(0.25, clock=Clock())
    limiter.acquire("k")
    assert RateLimiter.retry_after(limiter.acquire("k")) == 4


def test_rate_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(0, clock=Clock())
    assert not limiter.enabled
    assert all(limiter.acquire("k") == 0.0 for _ in range(10_000))
    assert len(limiter) == 0


def test_a_flood_of_random_keys_keeps_memory_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(50, max_buckets=1000, clock=clock)
    limiter.acquire("real-channel")
    for _ in range(20_000):
        limiter.acquire(secrets.token_urlsafe(16))
        assert len(limiter) <= 1000
    assert len(limiter) == 1000


def test_a_busy_channel_survives_a_flood_of_random_keys() -> None:
    clock = Clock()
    limiter = RateLimiter(1, max_buckets=100, clock=clock)
    limiter.acquire("busy")
    limiter.acquire("busy")
    for i in range(10_000):
        limiter.acquire(f"junk-{i}")
        if i % 50 == 0:
            # Still limited: its bucket was used recently, so it is not the one evicted.
            assert limiter.acquire("busy") > 0


def test_idle_buckets_are_dropped() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    for i in range(500):
        limiter.acquire(f"channel-{i}")
    assert len(limiter) == 500
    clock.now += 10  # every bucket has long refilled
    for _ in range(300):
        limiter.acquire("one")
        clock.now += 0.1
    assert len(limiter) == 1


def test_keys_are_not_kept() -> None:
    limiter = RateLimiter(5, clock=Clock())
    key = "secret-channel-key-" + secrets.token_urlsafe(16)
    limiter.acquire(key)
    stored = repr(vars(limiter)) + repr(list(limiter._buckets))
    assert key not in stored
    assert key.encode() not in b"".join(limiter._buckets)


def test_configuration() -> None:
    assert Config({}).rate_limit == 50
    assert Config({"VATS_RATE_LIMIT": "0"}).rate_limit == 0
    assert Config({"VATS_RATE_LIMIT": "2.5"}).rate_limit == 2.5
    for bad in ("-1", "lots", "inf", "nan"):
        with pytest.raises(ValueError, match="VATS_RATE_LIMIT"):
            Config({"VATS_RATE_LIMIT": bad})


# --- over HTTP ---------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    # 2 per second, bursts of 4: slow machines still send far faster than that.
    with started(tmp_path_factory.mktemp("limited"), {"VATS_RATE_LIMIT": "2"}) as stack:
        yield stack


@pytest.mark.e2e
def test_over_the_limit_is_429_with_retry_after_and_nothing_changes(limited: LiveStack) -> None:
    core = Core(limited)
    # Wait for a full bucket (earlier tests of this module may have used it).
    time.sleep(2.1)
    before = core.count_calls()
    with httpx.Client(timeout=10) as client:
        replies = [client.post(limited.calls_url, json=call_body()) for _ in range(30)]
    statuses = [r.status_code for r in replies]
    assert statuses[:4] == [200] * 4, statuses
    refused = [r for r in replies if r.status_code == 429]
    assert len(refused) >= 20, statuses
    for reply in refused:
        assert int(reply.headers["Retry-After"]) >= 1
        assert error_of(reply)["code"] == "rate_limited"
    assert core.count_calls() == before + statuses.count(200)
    # The bucket refills: one request in 1/rate seconds.
    time.sleep(0.55)
    assert httpx.post(limited.calls_url, json=call_body()).status_code == 200
    core.close()


@pytest.mark.e2e
def test_one_channel_over_its_limit_leaves_others_alone(limited: LiveStack) -> None:
    core = Core(limited)
    other = core.create_channel("other channel")
    core.close()
    other_url = f"{limited.http_url}/api/v2/telephony/calls/{other.key}"
    at_url = f"{limited.http_url}/api/v2/telephony/calls/@{limited.channel_key}"
    with httpx.Client(timeout=10) as client:
        for _ in range(15):
            if client.post(limited.calls_url, json=call_body()).status_code == 429:
                break
        # Right away (the bucket refills slowly): `@key` is the same key, with the same bucket.
        assert client.post(at_url, json=call_body()).status_code == 429
        assert client.post(limited.calls_url, json=call_body()).status_code == 429
        assert client.post(other_url, json=call_body()).status_code == 200


@pytest.mark.e2e
def test_refused_before_the_body_is_read(limited: LiveStack) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(15):
            client.post(limited.calls_url, json=call_body())
    # Announce 100 MB and send only the first kilobyte: the 429 comes at once all the same
    # (the ASGI server hands the application the first chunk with the request).
    path = f"/api/v2/telephony/calls/{limited.channel_key}".encode()
    started_at = time.monotonic()
    with socket.create_connection(("127.0.0.1", limited.http_port), timeout=5) as sock:
        sock.sendall(
            b"POST " + path + b" HTTP/1.1\r\nHost: gw\r\nContent-Type: multipart/form-data; "
            b"boundary=x\r\nContent-Length: 100000000\r\n\r\n" + b"--x" + b"\0" * 1024
        )
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 429"), reply[:200]
    assert b"retry-after: " in reply.lower()
    # Generous bound: far less than sending 100 MB would take.
    assert time.monotonic() - started_at < 5


@pytest.mark.e2e
def test_refusals_are_counted_and_the_key_is_not_logged(limited: LiveStack) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(25):
            client.post(limited.calls_url, json=call_body())
        metrics = client.get(f"{limited.http_url}/metrics").text
    counted = [
        line for line in metrics.splitlines() if line.startswith("vats_gateway_rate_limited_total")
    ]
    assert counted and float(counted[0].split()[-1]) >= 1, counted
    assert limited.channel_key not in limited.log("gateway")
