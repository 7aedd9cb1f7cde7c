"""Metrics, logs and health of real core and gateway processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import LiveStack, free_port
from tests.e2e.sse import SSEReader
from tests.ops.ops_support import Samples, json_lines, scrape, value, wav_bytes

pytestmark = pytest.mark.e2e

PBX_ROUTE = "/api/v2/telephony/calls/{channel_key}"
SECRETS = ("demo-channel-key", "demo-anna", "demo-boris", "demo-service", "demo-admin")


class OpsStack(LiveStack):
    """A live stack whose core serves metrics on a port of its own."""

    def __init__(self, workdir: Path) -> None:
        self.metrics_port = free_port()
        super().__init__(
            workdir,
            {
                "VATS_METRICS_ADDR": f"127.0.0.1:{self.metrics_port}",
                "VATS_STORAGE_CHECK_SECONDS": "0.2",
            },
        )

    def gateway_metrics(self) -> Samples:
        return scrape(f"{self.http_url}/metrics")

    def core_metrics(self) -> Samples:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsStack]:
    stack = OpsStack(tmp_path_factory.mktemp("ops"))
    try:
        stack.start_core()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` with these labels (and any others)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_metrics_move_when_requests_are_made(stack: OpsStack) -> None:
    gateway_before, core_before = stack.gateway_metrics(), stack.core_metrics()
    created = httpx.post(
        stack.calls_url,
        data={"action": "create_call", "direction": "incoming", "phone": "+74951110000"},
    )
    assert created.status_code == 200
    unknown = httpx.post(
        f"{stack.http_url}/api/v2/telephony/calls/no-such-key",
        data={"action": "create_call", "direction": "incoming", "phone": "+74951110001"},
    )
    assert unknown.status_code == 404
    listed = httpx.get(
        f"{stack.http_url}/api/v2/telephony/history", headers={"Authorization": "Bearer demo-anna"}
    )
    assert listed.status_code == 200
    gateway_after = stack.gateway_metrics()
    deadline = time.monotonic() + 5
    while True:
        core_after = stack.core_metrics()
        if (
            value(core_after, "vats_core_active_calls")
            > value(core_before, "vats_core_active_calls")
            or time.monotonic() > deadline
        ):
            break
        time.sleep(0.1)

    def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    g = (gateway_before, gateway_after)
    assert moved(*g, "vats_gateway_requests_total", route=PBX_ROUTE, status="200") == 1
    assert moved(*g, "vats_gateway_requests_total", route=PBX_ROUTE, status="404") == 1
    assert (
        moved(
            *g,
            "vats_gateway_requests_total",
            route="/api/v2/telephony/history",
            action="list_calls",
            status="200",
        )
        == 1
    )
    assert moved(*g, "vats_gateway_request_duration_seconds_count", route=PBX_ROUTE) == 2
    # Route templates only: no channel key ever becomes a label.
    assert not any("no-such-key" in str(labels) for _, labels in gateway_after)
    c = (core_before, core_after)
    # The create_call and the one refused (unknown channel) went to core one batch each:
    # a command core refuses is an outcome of its batch, the batch itself succeeds.
    assert moved(*g, "vats_gateway_call_batch_commands_count") == 2
    assert moved(*g, "vats_gateway_call_batch_commands_sum") == 2
    assert moved(*c, "vats_core_rpcs_total", method="SubmitCalls", code="OK") == 2
    assert moved(*c, "vats_core_rpcs_total", method="ListCalls", code="OK") == 1
    assert moved(*c, "vats_core_active_calls") == 1
    assert moved(*c, "vats_core_events_published_total") == 1
    assert value(core_after, "vats_core_storage_up") == 1
    assert ("vats_gateway_rate_limited_total", frozenset()) in gateway_after


def test_request_id_reaches_both_logs_and_no_secret_is_ever_logged(stack: OpsStack) -> None:
    request_id = "ops-trace-7f3e9a"
    audio = wav_bytes()
    created = httpx.post(
        stack.calls_url,
        files=[
            ("action", (None, "create_call")),
            ("direction", (None, "incoming")),
            ("phone", (None, "+74951112233")),
            ("user_ids[]", (None, "1")),
            ("audio_record", ("call.wav", audio, "audio/wav")),
        ],
        headers={"X-Request-ID": request_id},
        timeout=10,
    )
    assert created.status_code == 200, created.text
    assert created.headers["X-Request-ID"] == request_id
    link = created.json()["data"]["audio_record"]
    signature = parse_qs(urlsplit(link).query)["signature"][0]
    assert httpx.get(link, timeout=10).content == audio

    cards = SSEReader(f"{stack.http_url}/api/v2/telephony/cards/stream?access_token=demo-anna")
    try:
        assert cards.status == 200
        assert cards.next().event == "show"
    finally:
        cards.close()
    history = f"{stack.http_url}/api/v2/telephony/history"
    assert httpx.get(history, params={"access_token": "demo-boris"}).status_code == 200
    assert httpx.get(history, headers={"Authorization": "Bearer demo-service"}).status_code == 200
    assert httpx.get(history, headers={"Authorization": "Bearer wrong-token-x"}).status_code == 401
    refused = {"action": "no-such-action"}
    assert httpx.post(f"{stack.calls_url}?key=demo-channel-key", data=refused).status_code == 422
    at_key = f"{stack.http_url}/api/v2/telephony/calls/@demo-channel-key"
    assert httpx.post(at_key, data=refused).status_code == 422
    assert httpx.get(f"{stack.http_url}/api/v2/telephony/calls/demo-channel-key").status_code == (
        405
    )
    time.sleep(1.5)  # the card stream's end is noticed at its next keepalive

    gateway_lines = json_lines(stack.workdir / "gateway.log")
    core_lines = json_lines(stack.workdir / "core.log")
    traced = [line for line in gateway_lines if line.get("request_id") == request_id]
    assert [(line["route"], line["status"]) for line in traced] == [(PBX_ROUTE, 200)]
    assert traced[0]["duration_ms"] > 0
    core_traced = {
        line.get("method") for line in core_lines if line.get("request_id") == request_id
    } - {None}
    assert core_traced == {
        "/telephony.v1.CallService/UploadRecord",
        "/telephony.v1.CallService/SubmitCalls",
    }
    # The batch the create_call went in names it, and how it ended.
    commands = [line for line in core_lines if request_id in line.get("request_ids", ())]
    assert [line["outcomes"][line["request_ids"].index(request_id)] for line in commands] == [
        "created"
    ]
    assert any(line.get("message") == "stream closed" for line in gateway_lines)

    for name in ("gateway", "core"):
        text = stack.log(name)
        for secret in (*SECRETS, "wrong-token-x", signature, "e2e-link-secret"):
            assert secret not in text, f"{secret!r} in {name}.log"
        # uvicorn's own access log (raw paths and query strings) is off.
        assert '"GET /api' not in text and "HTTP/1.1" not in text


def test_health_and_readiness_follow_a_stopped_core(tmp_path: Path) -> None:
    stack = OpsStack(tmp_path)
    try:
        stack.start_core()
        stack.start_gateway()
        url = stack.http_url
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "core": "serving", "storage": "ok"}
        assert httpx.get(f"{url}/livez").json() == {"status": "ok"}

        stack.stop_core()
        not_ready = httpx.get(f"{url}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["core"] == "unreachable"
        assert not_ready.headers["Retry-After"]
        assert httpx.get(f"{url}/healthz").status_code == 503
        # Liveness is the gateway alone: restarting it would not bring core back.
        assert httpx.get(f"{url}/livez").status_code == 200

        stack.start_core()
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the gateway did not become ready again"
            time.sleep(0.1)
    finally:
        stack.stop()
