"""VATS_TRUSTED_PROXIES, and what the gateway takes from a request a trusted proxy forwarded:
the client's address in its log and the scheme of its links. Through a real nginx and
uvicorn: tests/deploy/test_nginx.py."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from falcon.testing import ASGIConductor

from gateway.config import Config
from telephony.v1 import call_pb2
from tests.gateway.gateway_fakes import FakeCore, sample_call

FORM = "application/x-www-form-urlencoded"
CREATE = "action=create_call&direction=incoming&phone=%2B74951234567"


def test_no_proxy_is_trusted_by_default() -> None:
    assert Config({}).trusted_proxies == ()
    assert Config({"VATS_TRUSTED_PROXIES": " "}).trusted_proxies == ()


def test_trusted_proxies_are_addresses_and_networks_written_one_way() -> None:
    config = Config({"VATS_TRUSTED_PROXIES": "127.0.0.1, 10.1.2.3/8,::1 ,fd00::/8,192.0.2.7/32,"})
    assert config.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "192.0.2.7")


@pytest.mark.parametrize("value", ["localhost", "10.0.0.0/33", "*", "127.0.0.1;10.0.0.1", "1.2.3"])
def test_a_bad_trusted_proxy_is_refused_by_name(value: str) -> None:
    with pytest.raises(ValueError, match="VATS_TRUSTED_PROXIES") as refused:
        Config({"VATS_TRUSTED_PROXIES": value})
    assert "IP addresses or CIDR networks" in str(refused.value)


def test_gateway_refuses_to_start_with_a_bad_trusted_proxy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway"],
        env={"VATS_TRUSTED_PROXIES": "nginx.internal", "VATS_HTTP_ADDR": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "VATS_TRUSTED_PROXIES" in result.stderr and "nginx.internal" in result.stderr


@pytest.mark.parametrize(
    ("public_url", "scheme", "links"),
    [
        ("http://vats.test", "http", "http://vats.test"),
        ("http://vats.test", "https", "https://vats.test"),
        ("https://vats.test", "http", "https://vats.test"),
        ("https://vats.test", "https", "https://vats.test"),
    ],
)
def test_links_take_https_from_the_request_and_never_lose_it(
    public_url: str, scheme: str, links: str
) -> None:
    assert Config({"VATS_PUBLIC_URL": public_url}).public_url_for(scheme) == links


@pytest.mark.parametrize(
    ("scheme", "link"), [("http", "http://gw.test"), ("https", "https://gw.test")]
)
async def test_recording_link_in_a_reply_has_the_requests_scheme(
    gateway: ASGIConductor, fake_core: FakeCore, scheme: str, link: str
) -> None:
    recording = call_pb2.Recording(recording_id="r", signed_path="/api/v2/telephony/records/r?x=1")
    fake_core.calls.reply = sample_call(recording=recording)
    # uvicorn sets the scheme to X-Forwarded-Proto's only for a trusted proxy.
    result = await gateway.simulate_post(
        "/api/v2/telephony/calls/demo-key", body=CREATE, content_type=FORM, protocol=scheme
    )
    assert result.status_code == 200, result.text
    assert result.json["data"]["audio_record"] == f"{link}/api/v2/telephony/records/r?x=1"


@pytest.mark.parametrize("forwarded_for", ["203.0.113.9", "192.0.2.10, 203.0.113.9"])
async def test_access_log_shows_the_connections_client_not_a_header(
    gateway: ASGIConductor, caplog: pytest.LogCaptureFixture, forwarded_for: str
) -> None:
    caplog.set_level(logging.INFO, logger="vats.gateway.access")
    result = await gateway.simulate_get(
        "/livez", remote_addr="192.0.2.10", headers={"X-Forwarded-For": forwarded_for}
    )
    assert result.status_code == 200
    (line,) = [r for r in caplog.records if r.name == "vats.gateway.access"]
    assert vars(line)["fields"]["client"] == "192.0.2.10"
