"""Security headers on every route family of the gateway, answers and errors alike."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import AsyncIterator, Mapping

import falcon
import falcon.asgi
import pytest
from falcon.testing import ASGIConductor
from falcon.testing.client import Result, StreamedResult

from gateway.config import Config
from gateway.security import ANSWER_POLICY, SecurityHeaders, page_policy
from tests.gateway.edge_fakes import edge_core
from tests.gateway.gateway_fakes import EMPLOYEE_TOKEN, FakeCore, multipart

TOKEN = {"Authorization": f"Bearer {EMPLOYEE_TOKEN}"}
EVERYWHERE = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    async with edge_core() as core:
        yield core


def assert_secure(result: Result | StreamedResult, cache_control: str = "no-store") -> None:
    headers: Mapping[str, str] = {k.lower(): v for k, v in result.headers.items()}
    for name, value in EVERYWHERE.items():
        assert headers.get(name) == value, name
    assert headers.get("cache-control") == cache_control
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "server" not in headers


def directives(policy: str) -> dict[str, str]:
    pairs = (part.strip().partition(" ") for part in policy.split(";"))
    return {name: value for name, _, value in pairs}


async def test_pbx_endpoint_answers_and_refusals(gateway: ASGIConductor) -> None:
    body, content_type = multipart(
        [
            ("action", "create_call"),
            ("direction", "outgoing"),
            ("phone", "777777777"),
            ("call_status", "ringing"),
        ]
    )
    url = "/api/v2/telephony/calls/demo-key"
    result = await gateway.simulate_post(url, body=body, content_type=content_type)
    assert result.status_code == 200
    assert_secure(result)
    refused = await gateway.simulate_post(
        url, body=b"action=nope", content_type=falcon.MEDIA_URLENCODED
    )
    assert refused.status_code == 422
    assert_secure(refused)


@pytest.mark.parametrize("path", ["/api/v2/telephony/history", "/api/v2/telephony/history/1"])
async def test_history_is_never_stored(gateway: ASGIConductor, path: str) -> None:
    result = await gateway.simulate_get(path, headers=TOKEN)
    assert result.status_code == 200
    assert_secure(result)
    unauthenticated = await gateway.simulate_get(path)
    assert unauthenticated.status_code == 401
    assert_secure(unauthenticated)


async def test_card_stream_is_never_stored(gateway: ASGIConductor) -> None:
    async with gateway.simulate_get_stream(
        "/api/v2/telephony/cards/stream", headers=TOKEN
    ) as result:
        assert result.status_code == 200
        assert result.headers["content-type"].startswith("text/event-stream")
        assert_secure(result)
    refused = await gateway.simulate_get(
        "/api/v2/telephony/cards/stream", headers={"Authorization": "Bearer wrong"}
    )
    assert refused.status_code == 401
    assert_secure(refused)


async def test_recordings_are_never_stored(gateway: ASGIConductor) -> None:
    url = "/api/v2/telephony/records/rec-1"
    whole = await gateway.simulate_get(url, headers=TOKEN)
    assert whole.status_code == 200
    assert_secure(whole)
    part = await gateway.simulate_get(url, headers={**TOKEN, "Range": "bytes=0-9"})
    assert part.status_code == 206
    assert_secure(part)
    # A recording opened on its own still plays: its answer may play media of its origin.
    assert directives(whole.headers["content-security-policy"])["media-src"] == "'self'"


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/metrics", "/openapi.json"])
async def test_operations_answers_are_not_stored(gateway: ASGIConductor, path: str) -> None:
    result = await gateway.simulate_get(path)
    assert result.status_code in (200, 503)
    assert_secure(result)
    assert result.headers["content-security-policy"] == ANSWER_POLICY


async def test_unknown_path_is_covered(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get("/nowhere")
    assert result.status_code == 404
    assert_secure(result)


async def test_agent_page_has_the_strict_page_policy(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get("/agent")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/html")
    assert_secure(result)
    policy = directives(result.headers["content-security-policy"])
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["base-uri"] == "'none'"
    assert policy["form-action"] == "'self'"
    # Recording links are built on VATS_PUBLIC_URL (http://gw.test/ here).
    assert policy["media-src"] == "'self' http://gw.test"


def test_page_policy_names_no_origin_for_a_bad_public_url() -> None:
    assert directives(page_policy("not a url"))["media-src"] == "'self'"


@pytest.mark.parametrize("path", ["/static/agent.js", "/static/agent.css", "/agent/vocabulary.js"])
async def test_unhashed_assets_are_revalidated(gateway: ASGIConductor, path: str) -> None:
    first = await gateway.simulate_get(path)
    assert first.status_code == 200
    assert_secure(first, cache_control="no-cache")
    again = await gateway.simulate_get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert_secure(again, cache_control="no-cache")


async def test_missing_static_file_is_covered(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get("/static/nothing.js")
    assert result.status_code == 404
    assert_secure(result)


def hashed_assets(tmp_path: pathlib.Path) -> tuple[falcon.asgi.App, str]:
    """A static route over files with and without their content's hash in their name,
    and the name of the one named by its hash."""
    content = b"console.log('hashed');\n"
    digest = hashlib.sha256(content).hexdigest()[:12]
    (tmp_path / f"app.{digest}.js").write_bytes(content)
    (tmp_path / "app.0123456789ab.js").write_bytes(content)
    (tmp_path / "plain.js").write_bytes(content)
    app = falcon.asgi.App(middleware=[SecurityHeaders(tmp_path)])
    app.add_static_route("/static", str(tmp_path))
    return app, f"app.{digest}.js"


async def test_asset_named_by_its_content_hash_is_cached_for_good(tmp_path: pathlib.Path) -> None:
    app, name = hashed_assets(tmp_path)
    async with ASGIConductor(app) as client:
        hashed = await client.simulate_get(f"/static/{name}")
        wrong_hash = await client.simulate_get("/static/app.0123456789ab.js")
        plain = await client.simulate_get("/static/plain.js")
    assert hashed.headers["cache-control"] == "public, max-age=31536000, immutable"
    # A name that looks hashed but does not match the content is no promise it never changes.
    assert wrong_hash.headers["cache-control"] == "no-cache"
    assert plain.headers["cache-control"] == "no-cache"


async def test_unexpected_error_answer_is_covered(fake_core: FakeCore, config: Config) -> None:
    from gateway.app import create_app

    class Broken:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            raise RuntimeError("a bug")

    app = create_app(config)
    app.add_route("/broken", Broken())
    async with ASGIConductor(app) as client:
        result = await client.simulate_get("/broken")
    assert result.status_code == 500
    assert_secure(result)
