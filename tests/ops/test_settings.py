"""Settings are typed and bounded: a bad value is refused with the variable's name, by the
parser and by core and the gateway at start (exit status 1, one error line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gateway.config import Config
from tests.conftest import ROOT, free_port
from vats_settings import Setting, SettingError, integer, text
from vats_settings import table as t


@pytest.mark.parametrize(
    ("setting", "raw", "message"),
    [
        (
            t.MAX_RECORD_MB,
            "abc",
            "VATS_MAX_RECORD_MB must be an integer between 1 and 4096, not 'abc'",
        ),
        (t.MAX_RECORD_MB, "0", "VATS_MAX_RECORD_MB must be an integer between 1 and 4096"),
        (t.MAX_RECORD_MB, "4097", "VATS_MAX_RECORD_MB must be an integer between 1 and 4096"),
        (t.STORAGE_WORKERS, "-2", "VATS_STORAGE_WORKERS must be an integer between 1 and 256"),
        (t.CORE_TIMEOUT, "0", "VATS_CORE_TIMEOUT must be a number above 0 up to 3600"),
        (t.CORE_TIMEOUT, "nan", "VATS_CORE_TIMEOUT must be a number above 0"),
        (t.RATE_LIMIT, "-1", "VATS_RATE_LIMIT must be a number from 0 up to 1e+06"),
        (t.RATE_LIMIT, "inf", "VATS_RATE_LIMIT must be a number from 0"),
        (t.EVENT_SOURCE, "polling", "VATS_EVENT_SOURCE must be one of changestream, inprocess"),
        (t.LOG_LEVEL, "loud", "VATS_LOG_LEVEL must be one of DEBUG, INFO"),
        (t.HTTP_ADDR, "8080", "VATS_HTTP_ADDR must be host:port"),
        (t.HTTP_ADDR, "localhost:http", "VATS_HTTP_ADDR must be host:port"),
        (t.GRPC_ADDR, "[::]:70000", "VATS_GRPC_ADDR must be host:port (a port from 0 to 65535)"),
        (
            t.METRICS_ADDR,
            "on",
            "VATS_METRICS_ADDR must be host:port (a port from 0 to 65535) or off",
        ),
        (t.PUBLIC_URL, "vats.example.com", "VATS_PUBLIC_URL must be an http:// or https:// URL"),
        (t.PUBLIC_URL, "https://", "VATS_PUBLIC_URL must be an http:// or https:// URL"),
        (t.DEFAULT_REGION, "Russia", "VATS_DEFAULT_REGION must be a two-letter region code"),
        (t.TRUSTED_PROXIES, "10.0.0.1, nginx", "VATS_TRUSTED_PROXIES must be a comma-separated"),
    ],
)
def test_a_bad_value_is_refused_with_the_variable_name(
    setting: Setting[object], raw: str, message: str
) -> None:
    with pytest.raises(SettingError) as refused:
        setting.read({setting.name: raw})
    assert str(refused.value).startswith(message)
    assert repr(raw) in str(refused.value)


def test_values_are_parsed_to_their_type() -> None:
    assert t.MAX_RECORD_MB.read({"VATS_MAX_RECORD_MB": " 12 "}) == 12
    assert t.RATE_LIMIT.read({"VATS_RATE_LIMIT": "0"}) == 0.0
    assert t.SSE_KEEPALIVE.read({"VATS_SSE_KEEPALIVE": "0.2"}) == 0.2
    assert t.LOG_LEVEL.read({"VATS_LOG_LEVEL": "warning"}) == "WARNING"
    assert t.PUBLIC_URL.read({"VATS_PUBLIC_URL": "https://vats.example.com/"}) == (
        "https://vats.example.com"
    )
    assert t.TRUSTED_PROXIES.read({"VATS_TRUSTED_PROXIES": "10.1.2.3/8, ::1"}) == (
        "10.0.0.0/8",
        "::1",
    )


def test_an_empty_value_means_the_default() -> None:
    assert t.MAX_RECORD_MB.read({"VATS_MAX_RECORD_MB": ""}) == 200
    assert t.GRPC_ADDR.read({"VATS_GRPC_ADDR": " "}) == "127.0.0.1:50051"
    assert t.SERVICE_TOKEN.read({"VATS_SERVICE_TOKEN": ""}) is None
    # Except where empty has always meant off.
    assert t.METRICS_ADDR.read({"VATS_METRICS_ADDR": ""}) is None


def test_a_default_can_be_another_variables_value() -> None:
    assert t.CORE_TARGET.read({"VATS_GRPC_ADDR": "core:1"}) == "core:1"
    assert t.CORE_TARGET.read({"VATS_GRPC_ADDR": "core:1", "VATS_CORE_TARGET": "x:2"}) == "x:2"
    assert t.PUBLIC_URL.read({"VATS_HTTP_ADDR": "0.0.0.0:9000"}) == "http://0.0.0.0:9000"


def test_a_definition_is_checked_when_made() -> None:
    with pytest.raises(SettingError, match="VATS_TEST_BAD_DEFAULT must be an integer"):
        integer("VATS_TEST_BAD_DEFAULT", 0, 1, 10, "a default out of its own bounds")
    with pytest.raises(ValueError, match="VATS_MAX_RECORD_MB is defined twice"):
        integer("VATS_MAX_RECORD_MB", 1, 1, 10, "a second definition")
    with pytest.raises(ValueError, match="VATS_NOWHERE is not defined"):
        text("VATS_TEST_DANGLING", "{VATS_NOWHERE}", "a default naming no variable")


def test_gateway_reads_the_shared_definitions() -> None:
    config = Config({"VATS_MAX_RECORD_MB": "3", "VATS_HTTP_ADDR": "0.0.0.0:9000"})
    assert config.max_record_bytes == 3 * 1024 * 1024
    assert config.public_url == "http://0.0.0.0:9000"
    with pytest.raises(SettingError, match="VATS_MAX_FORM_PARTS"):
        Config({"VATS_MAX_FORM_PARTS": "-1"})


@pytest.mark.parametrize("module", ["core", "gateway"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VATS_MAX_RECORD_MB", "abc"),
        ("VATS_LOG_LEVEL", "loud"),
        ("VATS_PUBLIC_URL", "vats.example.com"),
    ],
)
def test_a_process_refuses_a_bad_value_at_start(module: str, variable: str, value: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VATS_")},
        "VATS_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "VATS_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "VATS_METRICS_ADDR": "off",
        variable: value,
    }
    result = subprocess.run(
        [sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, timeout=30
    )
    assert result.returncode == 1
    [line] = result.stderr.decode().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert entry["message"].startswith(f"{variable} must be ")
    assert repr(value) in entry["message"]
