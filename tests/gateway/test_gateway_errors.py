"""The gRPC-to-HTTP table, the error body, health and the served documents."""

from __future__ import annotations

import falcon
import grpc
import pytest
from falcon.testing import ASGIConductor
from grpc_health.v1 import health_pb2

from gateway import errors
from gateway.app import create_app
from gateway.config import Config
from gateway.errors import CoreStatus, GatewayError, from_core
from gateway.openapi import build_document
from tests.gateway.gateway_fakes import FakeCore


@pytest.mark.parametrize(
    ("reason", "code", "status"),
    [
        ("invalid_request", grpc.StatusCode.INVALID_ARGUMENT, 422),
        ("not_found", grpc.StatusCode.NOT_FOUND, 404),
        ("final_status", grpc.StatusCode.FAILED_PRECONDITION, 409),
        ("idempotency_conflict", grpc.StatusCode.ABORTED, 409),
        ("unsupported_media_type", grpc.StatusCode.INVALID_ARGUMENT, 415),
        ("payload_too_large", grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
        ("unauthenticated", grpc.StatusCode.UNAUTHENTICATED, 401),
        ("permission_denied", grpc.StatusCode.PERMISSION_DENIED, 403),
        ("conflict", grpc.StatusCode.ABORTED, 503),
        ("rate_limited", grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    ],
)
def test_reasons_of_the_conventions_map_to_their_http_status(
    reason: str, code: grpc.StatusCode, status: int
) -> None:
    error = from_core(CoreStatus(code, "text", reason))
    assert (error.status_code, error.reason) == (status, reason)


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 503, "unavailable"),
        (grpc.StatusCode.INVALID_ARGUMENT, 422, "invalid_request"),
        (grpc.StatusCode.NOT_FOUND, 404, "not_found"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limited"),
        (grpc.StatusCode.OUT_OF_RANGE, 416, "range_not_satisfiable"),
        (grpc.StatusCode.INTERNAL, 502, "core_error"),
        (grpc.StatusCode.UNKNOWN, 502, "core_error"),
        (grpc.StatusCode.UNIMPLEMENTED, 502, "core_error"),
    ],
)
def test_bare_codes_map_when_core_gave_no_reason(
    code: grpc.StatusCode, status: int, reason: str
) -> None:
    error = from_core(CoreStatus(code, "details"))
    assert (error.status_code, error.reason) == (status, reason)


def test_retryable_errors_carry_retry_after() -> None:
    assert from_core(CoreStatus(grpc.StatusCode.UNAVAILABLE, "")).headers == {"Retry-After": "1"}
    assert from_core(
        CoreStatus(grpc.StatusCode.ABORTED, "", "conflict"), retry_after=3
    ).headers == {"Retry-After": "3"}
    limited = CoreStatus(grpc.StatusCode.RESOURCE_EXHAUSTED, "", "rate_limited", retry_after=2.2)
    assert from_core(limited).headers == {"Retry-After": "3"}


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED]
)
def test_refused_service_token_is_our_misconfiguration(code: grpc.StatusCode) -> None:
    error = from_core(CoreStatus(code, "bad token"), service_auth=True)
    assert (error.status_code, error.reason) == (503, "unavailable")


def test_server_side_trouble_hides_core_details() -> None:
    error = from_core(CoreStatus(grpc.StatusCode.INTERNAL, "Traceback: secret", fields={"a": "b"}))
    assert "secret" not in error.message
    assert error.fields == {}


def test_error_body_shapes() -> None:
    with_fields = GatewayError(422, "invalid_request", "bad", {"phone": "is required"})
    assert errors.error_body(with_fields) == {
        "error": {"code": "invalid_request", "message": "bad", "fields": {"phone": "is required"}}
    }
    assert errors.error_body(GatewayError(404, "not_found", "gone")) == {
        "error": {"code": "not_found", "message": "gone"}
    }
    assert errors.error_body(falcon.HTTPMethodNotAllowed(["POST"]))["error"]["code"] == (
        "method_not_allowed"
    )


async def test_unexpected_exception_is_a_json_500_without_traceback(config: Config) -> None:
    app = create_app(config)

    class Broken:
        async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            raise RuntimeError("secret detail")

    app.add_route("/broken", Broken())
    async with ASGIConductor(app) as gateway:
        result = await gateway.simulate_get("/broken")
    assert result.status_code == 500
    assert result.json == {"error": {"code": "internal", "message": "internal error"}}


async def test_healthz_with_core_up(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get("/healthz")
    assert (result.status_code, result.json) == (200, {"status": "ok", "core": "ok"})


async def test_healthz_with_core_not_serving(gateway: ASGIConductor, fake_core: FakeCore) -> None:
    await fake_core.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    result = await gateway.simulate_get("/healthz")
    assert (result.status_code, result.json) == (503, {"status": "degraded", "core": "unreachable"})


async def test_healthz_with_core_down() -> None:
    config = Config({"VATS_CORE_TARGET": "127.0.0.1:1", "VATS_HEALTH_TIMEOUT": "0.5"})
    async with ASGIConductor(create_app(config)) as gateway:
        result = await gateway.simulate_get("/healthz")
    assert result.status_code == 503


async def test_openapi_document_is_served_as_built(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get("/openapi.json")
    assert result.status_code == 200
    assert result.headers["content-type"] == falcon.MEDIA_JSON
    assert result.json == build_document()
    assert result.json["openapi"].startswith("3.1")


def test_config_defaults_and_validation() -> None:
    config = Config({"VATS_HTTP_ADDR": "0.0.0.0:9000", "VATS_GRPC_ADDR": "core:1"})
    assert config.core_target == "core:1"
    assert config.public_url == "http://0.0.0.0:9000"
    assert config.max_record_bytes == 200 * 1024 * 1024
    assert config.http_host_port == ("0.0.0.0", 9000)
    assert Config({"VATS_HTTP_ADDR": "[::1]:80"}).http_host_port == ("::1", 80)
    with pytest.raises(ValueError, match="VATS_MAX_RECORD_MB"):
        Config({"VATS_MAX_RECORD_MB": "lots"})
    with pytest.raises(ValueError, match="VATS_CORE_TIMEOUT"):
        Config({"VATS_CORE_TIMEOUT": "0"})
