"""The supervisor board on the real gateway and core: a ringing call shows at once with a
ticking timer, employees' states follow it, today's figures count the calls posted; an
employee token cannot open the board's stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.conftest import LiveStack

from .conftest import PageWatch
from .pbx import Pbx

pytestmark = pytest.mark.browser

SUPERVISOR = "demo-supervisor"
ANNA = "demo-anna"
CHANNEL_ID = 1  # the seed's only channel
API = "/api/v2/telephony"


@pytest.fixture
async def pbx(live_stack: LiveStack) -> AsyncIterator[Pbx]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield Pbx(client, live_stack.calls_url)


async def open_board(page: Page, stack: LiveStack, token: str) -> None:
    await page.goto(f"{stack.http_url}/board")
    await page.fill("#token-input", token)
    await page.click("#token-submit")


async def figures_now(stack: LiveStack) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10) as client:
        response = await client.get(
            f"{API}/board", headers={"Authorization": f"Bearer {SUPERVISOR}"}
        )
    assert response.status_code == 200, response.text
    rows = [f for f in response.json()["data"]["figures"] if f["channel_id"] == CHANNEL_ID]
    assert len(rows) == 1
    figures: dict[str, Any] = rows[0]
    return figures


async def test_the_board_shows_a_ringing_call_at_once_with_its_timer_and_todays_figures(
    page: Page, live_stack: LiveStack, pbx: Pbx, watch: PageWatch
) -> None:
    before = await figures_now(live_stack)
    await open_board(page, live_stack, SUPERVISOR)
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")
    figures = page.locator(f'#figures-body [data-channel-id="{CHANNEL_ID}"]')
    await expect(figures.get_by_test_id("figure-incoming")).to_have_text(str(before["incoming"]))

    posted = time.monotonic()
    ringing = await pbx.create("+74957000010", user_ids=(1, 2))
    row = page.locator(f'#calls-body [data-call-id="{ringing["call_id"]}"]')
    await expect(row).to_be_visible(timeout=15_000)
    print(f"\nboard: ringing call shown {time.monotonic() - posted:.3f} s after the POST began")

    await expect(row.get_by_test_id("board-call-status")).to_have_text("Ringing")
    await expect(row.get_by_test_id("board-call-phone")).to_have_text("+7 495 700-00-10")
    await expect(row.get_by_test_id("board-call-phone")).to_have_attribute("title", "+74957000010")
    await expect(row.get_by_test_id("board-call-who")).to_contain_text("Anna Petrova")
    await expect(row.get_by_test_id("board-call-who")).to_contain_text("Boris Ivanov")
    await expect(row.get_by_test_id("board-call-channel")).to_have_text("+7 495 000-00-00")
    timer = row.get_by_test_id("board-call-timer")
    first = await timer.text_content()
    assert first is not None
    await expect(timer).not_to_have_text(first)  # it ticks

    anna = page.locator('#employees [data-employee-id="1"]')
    await expect(anna).to_have_attribute("data-state", "ringing")
    await pbx.update(ringing["call_id"], "in-progress", user_id=1)
    await expect(row.get_by_test_id("board-call-status")).to_have_text("In progress")
    await expect(row.get_by_test_id("board-call-who")).to_have_text("With Anna Petrova")
    await expect(anna).to_have_attribute("data-state", "on-call")
    await expect(anna.get_by_test_id("board-employee-state")).to_have_text("On a call")

    await pbx.update(ringing["call_id"], "answered")
    await expect(row).to_have_count(0)
    await expect(anna).to_have_attribute("data-state", "free")
    missed = await pbx.create("+74957000011", user_ids=(2,))
    await pbx.update(missed["call_id"], "missed")

    await expect(figures.get_by_test_id("figure-incoming")).to_have_text(
        str(before["incoming"] + 2)
    )
    await expect(figures.get_by_test_id("figure-answered")).to_have_text(
        str(before["answered"] + 1)
    )
    await expect(figures.get_by_test_id("figure-missed")).to_have_text(str(before["missed"] + 1))
    await expect(figures.get_by_test_id("figure-callbacks")).to_have_text(
        str(before["open_callbacks"] + 1)
    )
    rate = (before["answered"] + 1) / (before["incoming"] + 2)
    await expect(figures.get_by_test_id("figure-rate")).to_have_text(f"{round(rate * 100)}%")
    # The averages the page shows are core's, as minutes and seconds.
    after = await figures_now(live_stack)
    for test_id, seconds in (
        ("figure-avg-wait", after["average_wait_seconds"]),
        ("figure-avg-talk", after["average_talk_seconds"]),
    ):
        assert seconds is not None, test_id
        clock = f"{int(seconds) // 60}:{int(seconds) % 60:02d}"
        await expect(figures.get_by_test_id(test_id)).to_have_text(clock)
    await expect(page.get_by_test_id("calls-empty")).to_be_visible()
    assert not [url for url in watch.urls if SUPERVISOR in url]


async def test_an_employee_token_cannot_open_the_boards_stream(
    page: Page, live_stack: LiveStack, watch: PageWatch
) -> None:
    headers = {"Authorization": f"Bearer {ANNA}"}
    async with httpx.AsyncClient(base_url=live_stack.http_url, timeout=10) as client:
        ticket = await client.post(f"{API}/stream-tickets", headers=headers)
        assert ticket.status_code == 201, ticket.text
        by_ticket = await client.get(
            f"{API}/board/stream", params={"ticket": ticket.json()["ticket"]}
        )
        assert by_ticket.status_code == 403, by_ticket.text
        by_header = await client.get(f"{API}/board/stream", headers=headers)
        assert by_header.status_code == 403, by_header.text

    await open_board(page, live_stack, ANNA)
    status = page.locator("#connection-status")
    await expect(status).to_have_attribute("data-state", "rejected")
    error = page.get_by_test_id("token-error")
    await expect(error).to_contain_text("The board is for supervisors and admins")
    await expect(error).to_contain_text("HTTP 403")
    await expect(page.get_by_test_id("board")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length + localStorage.length") == 0
    assert not [url for url in watch.urls if ANNA in url]
