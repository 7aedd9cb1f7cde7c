"""The agent page on the real gateway and core: a call posted by the PBX appears and goes away."""

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.conftest import LiveStack

pytestmark = pytest.mark.browser

EMPLOYEE_TOKEN = "demo-anna"  # employee 1 in seed/demo.json


@pytest.fixture
def stack(live_stack: LiveStack) -> LiveStack:
    return live_stack


async def post_pbx(client: httpx.AsyncClient, url: str, fields: list[tuple[str, str]]) -> Any:
    # multipart/form-data, as the PBX sends it: (None, value) parts are plain form fields.
    response = await client.post(url, files=[(name, (None, value)) for name, value in fields])
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_posted_call_appears_on_the_agent_page_and_goes_when_answered(
    page: Page, stack: LiveStack, artifacts_dir: Path
) -> None:
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10) as client:
        for asset in (
            "/agent",
            "/board",
            "/agent/vocabulary.js",
            "/static/i18n.js",
            "/static/session.js",
            "/static/agent.js",
            "/static/agent.css",
            "/static/board.js",
            "/static/board.css",
        ):
            served = await client.get(asset)
            assert served.status_code == 200, f"the gateway does not serve {asset}"

    await page.goto(f"{stack.http_url}/agent")
    await page.fill("#token-input", EMPLOYEE_TOKEN)
    await page.click("#token-submit")
    status = page.locator("#connection-status")
    await expect(status).to_have_attribute("data-state", "live")

    calls_url = f"{stack.http_url}/api/v2/telephony/calls/{stack.channel_key}"
    async with httpx.AsyncClient(timeout=10) as client:
        created = await post_pbx(
            client,
            calls_url,
            [
                ("action", "create_call"),
                ("direction", "incoming"),
                ("phone", "+74951234567"),
                ("user_ids[]", "1"),
            ],
        )
        assert created["call_status"] == "ringing"

        card = page.locator(f'#cards [data-call-id="{created["call_id"]}"]')
        await expect(card).to_be_visible()
        await expect(card.get_by_test_id("card-status")).to_have_text("Ringing")
        await expect(card.get_by_test_id("card-phone")).to_have_attribute(
            "href", "tel:+74951234567"
        )
        await expect(card.get_by_test_id("card-ticket")).to_have_text(f"#{created['ticket_id']}")
        await expect(card.get_by_test_id("card-channel")).not_to_be_empty()
        await page.wait_for_timeout(600)  # let the arrival animation finish
        await page.screenshot(path=str(artifacts_dir / "agent-card.png"))

        # The ticket link opens the call's details, fetched with the same token.
        await post_pbx(
            client,
            calls_url,
            [
                ("action", "update_call"),
                ("call_id", str(created["call_id"])),
                ("call_status", "in-progress"),
                ("comment", "caller asks for a refund"),
            ],
        )
        await card.get_by_test_id("card-ticket").click()
        details = page.get_by_test_id("details")
        await expect(details).to_be_visible()
        await expect(page.get_by_test_id("details-history")).to_contain_text("Ringing")
        await expect(page.get_by_test_id("details-history")).to_contain_text("In progress")
        await expect(page.get_by_test_id("details-comments")).to_contain_text(
            "caller asks for a refund"
        )
        await page.screenshot(path=str(artifacts_dir / "agent-details.png"))
        await page.get_by_test_id("details-close").click()
        await expect(details).to_be_hidden()

        answered = await post_pbx(
            client,
            calls_url,
            [
                ("action", "update_call"),
                ("call_id", str(created["call_id"])),
                ("call_status", "answered"),
            ],
        )
        assert answered["call_status"] == "answered"

    await expect(card).to_have_count(0)
    await expect(status).to_have_attribute("data-state", "live")
