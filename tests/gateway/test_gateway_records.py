"""Recording downloads against a fake core: auth pass-through, Range, streaming."""

from __future__ import annotations

import pytest
from falcon.testing import ASGIConductor

from gateway import ranges
from gateway.app import create_app
from gateway.config import Config
from tests.gateway.gateway_fakes import EMPLOYEE_TOKEN, RECORDING, SERVICE_TOKEN, FakeCore

URL = "/api/v2/telephony/records/rec-1"
TOKEN = {"Authorization": f"Bearer {EMPLOYEE_TOKEN}"}


async def test_whole_recording_with_a_token(gateway: ASGIConductor, fake_core: FakeCore) -> None:
    result = await gateway.simulate_get(URL, headers=TOKEN)
    assert result.status_code == 200
    assert result.content == RECORDING
    assert result.headers["Content-Type"] == "audio/mpeg"
    assert result.headers["Content-Length"] == str(len(RECORDING))
    assert result.headers["Accept-Ranges"] == "bytes"


async def test_access_token_in_the_query_is_passed_as_bearer(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get(URL, params={"access_token": EMPLOYEE_TOKEN})
    assert result.status_code == 200


async def test_signed_link_is_passed_to_core(gateway: ASGIConductor, fake_core: FakeCore) -> None:
    result = await gateway.simulate_get(URL, query_string="expires=1900000000&signature=good")
    assert result.status_code == 200
    (request,) = fake_core.calls.download_requests
    assert (request.expires, request.signature) == (1900000000, "good")
    # The gateway vouches for a signed link with its own token; core checks the signature.
    assert fake_core.calls.metadata[-1]["authorization"] == f"Bearer {SERVICE_TOKEN}"


async def test_the_token_of_a_signed_link_is_passed_to_core(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    query = "expires=1900000000&token=tok_0123456789abcdef&signature=good"
    result = await gateway.simulate_get(URL, query_string=query)
    assert result.status_code == 200
    (request,) = fake_core.calls.download_requests
    assert (request.expires, request.token_id, request.signature) == (
        1900000000,
        "tok_0123456789abcdef",
        "good",
    )


@pytest.mark.parametrize(
    "query",
    [
        "expires=1900000000&signature=bad",
        "expires=soon&signature=good",
        "signature=good",
        "token=tok_0123456789abcdef",
        "expires=1900000000&token=tok%20anna&signature=good",
        "expires=1900000000&token=" + "t" * 65 + "&signature=good",
    ],
)
async def test_bad_signed_link_is_403(gateway: ASGIConductor, query: str) -> None:
    result = await gateway.simulate_get(URL, query_string=query)
    assert result.status_code == 403
    assert result.json["error"]["code"] == "permission_denied"


async def test_no_credentials_is_401(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get(URL)
    assert result.status_code == 401
    assert result.json["error"]["code"] == "unauthenticated"


async def test_unknown_recording_is_404(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get("/api/v2/telephony/records/nope", headers=TOKEN)
    assert result.status_code == 404


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, len(RECORDING) - 1),
        ("bytes=-500", len(RECORDING) - 500, len(RECORDING) - 1),
        ("bytes=70000-200000", 70000, 200000),
        ("bytes=255990-999999", 255990, len(RECORDING) - 1),
        ("bytes=-999999", 0, len(RECORDING) - 1),
    ],
)
async def test_range_is_206_with_exactly_those_bytes(
    gateway: ASGIConductor, header: str, start: int, end: int
) -> None:
    result = await gateway.simulate_get(URL, headers={**TOKEN, "Range": header})
    assert result.status_code == 206
    assert result.content == RECORDING[start : end + 1]
    assert result.headers["Content-Range"] == f"bytes {start}-{end}/{len(RECORDING)}"
    assert result.headers["Content-Length"] == str(end - start + 1)


async def test_range_past_the_end_is_416_with_the_size(gateway: ASGIConductor) -> None:
    # Core refuses the offset before telling the size; the gateway asks for the size apart.
    result = await gateway.simulate_get(URL, headers={**TOKEN, "Range": "bytes=256000-"})
    assert result.status_code == 416
    assert result.headers["Content-Range"] == f"bytes */{len(RECORDING)}"
    assert result.json["error"]["code"] == "range_not_satisfiable"


async def test_malformed_range_gets_the_whole_recording(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get(URL, headers={**TOKEN, "Range": "bytes=0-1,5-6"})
    assert result.status_code == 200
    assert result.content == RECORDING


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ranges.RangeRequest(0, 0)),
        ("bytes=5-", ranges.RangeRequest(5, None)),
        ("bytes=-5", ranges.RangeRequest(None, 5)),
        ("BYTES = 1 - 2", ranges.RangeRequest(1, 2)),
        ("bytes=5-4", None),
        ("bytes=-", None),
        ("bytes=0-1,3-4", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("", None),
        (None, None),
    ],
)
def test_range_header_parsing(header: str | None, expected: ranges.RangeRequest | None) -> None:
    assert ranges.parse_range(header) == expected


@pytest.mark.parametrize(
    ("request_", "size", "expected"),
    [
        (ranges.RangeRequest(0, 9), 100, (0, 9)),
        (ranges.RangeRequest(90, 200), 100, (90, 99)),
        (ranges.RangeRequest(10, None), 100, (10, 99)),
        (ranges.RangeRequest(None, 10), 100, (90, 99)),
        (ranges.RangeRequest(None, 1000), 100, (0, 99)),
    ],
)
def test_range_resolution(
    request_: ranges.RangeRequest, size: int, expected: tuple[int, int]
) -> None:
    assert request_.resolve(size) == expected


@pytest.mark.parametrize(
    ("request_", "size"),
    [
        (ranges.RangeRequest(100, None), 100),
        (ranges.RangeRequest(100, 200), 100),
        (ranges.RangeRequest(None, 0), 100),
        (ranges.RangeRequest(None, 5), 0),
        (ranges.RangeRequest(0, 0), 0),
    ],
)
def test_unsatisfiable_ranges(request_: ranges.RangeRequest, size: int) -> None:
    with pytest.raises(ranges.RangeNotSatisfiable):
        request_.resolve(size)


def test_range_offset_and_length_for_core() -> None:
    assert (ranges.RangeRequest(10, 19).offset, ranges.RangeRequest(10, 19).length) == (10, 10)
    assert (ranges.RangeRequest(10, None).offset, ranges.RangeRequest(10, None).length) == (10, 0)
    assert ranges.RangeRequest(None, 5).offset is None


async def test_signed_link_with_a_refused_service_token_is_503(
    config: Config, fake_core: FakeCore
) -> None:
    config.service_token = "wrong"
    async with ASGIConductor(create_app(config)) as gateway:
        result = await gateway.simulate_get(URL, query_string="expires=1900000000&signature=good")
    assert result.status_code == 503
