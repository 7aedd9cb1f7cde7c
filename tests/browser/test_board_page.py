"""The supervisor board against the stand-in gateway: what it shows of a board, how it follows
the stream, and who may open it."""

# ruff: noqa: RUF001 - the page's Russian words are what these tests read.

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from .conftest import PageWatch, new_page
from .standin import (
    BOARD_STREAM_PATH,
    EMPLOYEE_TOKEN,
    SUPERVISOR_TOKEN,
    StandInGateway,
    iso,
)

pytestmark = pytest.mark.browser


def board(calls: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "day": "2026-03-08",
        "timezone": "Europe/Moscow",
        "at": iso(now),
        "calls": calls,
        "employees": [
            {"employee_id": 1, "name": "Anna Petrova", "state": "on-call", "call_id": 2},
            {"employee_id": 2, "name": "Boris Ivanov", "state": "ringing", "call_id": 1},
            {"employee_id": 3, "name": "Vera Sokolova", "state": "free", "call_id": None},
        ],
        "figures": [
            {
                "channel_id": 1,
                "channel_name": "Support line",
                "incoming": 12,
                "answered": 8,
                "missed": 3,
                "answer_rate": 8 / 12,
                "average_wait_seconds": 14.4,
                "average_talk_seconds": 185.0,
                "open_callbacks": 2,
            },
            {
                "channel_id": 2,
                "channel_name": "Sales",
                "incoming": 0,
                "answered": 0,
                "missed": 0,
                "answer_rate": None,
                "average_wait_seconds": None,
                "average_talk_seconds": None,
                "open_callbacks": 0,
            },
        ],
    }
    data.update(changes)
    return data


def board_call(call_id: int, status: str, **changes: Any) -> dict[str, Any]:
    created = datetime.now(UTC) - timedelta(minutes=2, seconds=5)
    call: dict[str, Any] = {
        "call_id": call_id,
        "ticket_id": 9000 + call_id,
        "channel_id": 1,
        "channel_name": "Support line",
        "direction": "incoming",
        "phone": "+74951234567",
        "phone_display": "+7 495 123-45-67",
        "contact_name": "Ivan Smirnov",
        "call_status": status,
        "created_at": iso(created),
        "answered_at": None,
        "user_id": None,
        "user_name": "",
        "audience": [
            {"employee_id": 1, "name": "Anna Petrova"},
            {"employee_id": 2, "name": "Boris Ivanov"},
        ],
    }
    call.update(changes)
    return call


def ringing_call() -> dict[str, Any]:
    """Ringing for 2:05 now."""
    return board_call(1, "ringing")


def talking_call() -> dict[str, Any]:
    """Answered by Anna 1:30 ago."""
    return board_call(
        2,
        "in-progress",
        answered_at=iso(datetime.now(UTC) - timedelta(minutes=1, seconds=30)),
        user_id=1,
        user_name="Anna Petrova",
        phone="+74957654321",
        phone_display="+7 495 765-43-21",
    )


async def sign_in(page: Page, standin: StandInGateway, token: str = SUPERVISOR_TOKEN) -> None:
    await page.goto(f"{standin.url}/board")
    await page.fill("#token-input", token)
    await page.click("#token-submit")


def board_streams(standin: StandInGateway) -> list[Any]:
    return [r for r in standin.stream_requests if r.path == BOARD_STREAM_PATH]


async def test_the_board_shows_calls_employees_and_figures(
    page: Page, standin: StandInGateway, artifacts_dir: Path
) -> None:
    standin.board = board([ringing_call(), talking_call()])
    await sign_in(page, standin)
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")

    rows = page.locator("#calls-body > tr")
    await expect(rows).to_have_count(2)
    await expect(page.get_by_test_id("calls-count")).to_have_text("2")
    ringing = page.locator('#calls-body [data-call-id="1"]')
    await expect(ringing.get_by_test_id("board-call-status")).to_have_text("Ringing")
    await expect(ringing.get_by_test_id("board-call-who")).to_have_text(
        "Rings for Anna Petrova, Boris Ivanov"
    )
    await expect(ringing.get_by_test_id("board-call-timer")).to_have_text(re.compile(r"^2:0\d$"))
    await expect(ringing).to_contain_text("waiting")
    talking = page.locator('#calls-body [data-call-id="2"]')
    await expect(talking.get_by_test_id("board-call-who")).to_have_text("With Anna Petrova")
    await expect(talking.get_by_test_id("board-call-timer")).to_have_text(re.compile(r"^1:3\d$"))
    await expect(talking).to_contain_text("talking")
    await expect(talking.get_by_test_id("board-call-phone")).to_have_attribute(
        "title", "+74957654321"
    )

    states = page.get_by_test_id("board-employee-state")
    await expect(states).to_have_text(["On a call", "Phone ringing", "Free"])

    support = page.locator('#figures-body [data-channel-id="1"]')
    await expect(support.get_by_test_id("figure-incoming")).to_have_text("12")
    await expect(support.get_by_test_id("figure-answered")).to_have_text("8")
    await expect(support.get_by_test_id("figure-missed")).to_have_text("3")
    await expect(support.get_by_test_id("figure-rate")).to_have_text("67%")
    await expect(support.get_by_test_id("figure-avg-wait")).to_have_text("0:14")
    await expect(support.get_by_test_id("figure-avg-talk")).to_have_text("3:05")
    await expect(support.get_by_test_id("figure-callbacks")).to_have_text("2")
    sales = page.locator('#figures-body [data-channel-id="2"]')
    await expect(sales.get_by_test_id("figure-rate")).to_have_text("—")
    await expect(page.get_by_test_id("board-day")).to_have_text("March 8, 2026, Europe/Moscow")
    await page.screenshot(path=str(artifacts_dir / "board-standin.png"), full_page=True)


async def test_the_board_follows_its_stream_and_timers_tick(
    page: Page, standin: StandInGateway
) -> None:
    standin.board = board([])
    await sign_in(page, standin)
    await standin.wait_for_streams(1)
    await expect(page.get_by_test_id("calls-empty")).to_be_visible()

    await standin.push_board(board([ringing_call()]))
    row = page.locator('#calls-body [data-call-id="1"]')
    timer = row.get_by_test_id("board-call-timer")
    await expect(timer).to_be_visible()
    await row.evaluate("el => { el.dataset.marker = 'same'; }")
    first = await timer.text_content()
    assert first is not None
    await expect(timer).not_to_have_text(first)

    answered = {"answered_at": iso(datetime.now(UTC)), "user_id": 2, "user_name": "Boris Ivanov"}
    await standin.push_board(board([{**ringing_call(), "call_status": "in-progress", **answered}]))
    await expect(row.get_by_test_id("board-call-who")).to_have_text("With Boris Ivanov")
    await expect(row).to_contain_text("talking")
    await expect(row).to_have_attribute("data-marker", "same")  # updated in place
    await standin.push_board(board([]))
    await expect(row).to_have_count(0)
    await expect(page.get_by_test_id("calls-empty")).to_be_visible()


async def test_the_board_reconnects_with_a_fresh_ticket(
    page: Page, standin: StandInGateway
) -> None:
    standin.board = board([ringing_call()])
    await sign_in(page, standin)
    await standin.wait_for_streams(1)
    status = page.locator("#connection-status")
    await expect(status).to_have_attribute("data-state", "live")

    standin.board = board([talking_call()])
    await standin.drop_streams()
    await standin.wait_for_streams(2)
    await expect(status).to_have_attribute("data-state", "live")
    # The stream starts with the whole board: what changed meanwhile is there.
    await expect(page.locator("#calls-body > tr")).to_have_count(1)
    await expect(page.locator('#calls-body [data-call-id="2"]')).to_be_visible()
    tickets = [r.ticket for r in board_streams(standin)]
    assert len(tickets) == len(set(tickets)) == 2
    assert all(r.token == SUPERVISOR_TOKEN for r in board_streams(standin))


async def test_an_employee_token_is_told_the_board_is_not_for_it(
    page: Page, standin: StandInGateway
) -> None:
    await sign_in(page, standin, EMPLOYEE_TOKEN)
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "rejected")
    error = page.get_by_test_id("token-error")
    await expect(error).to_contain_text(
        "The board is for supervisors and admins: this token may not open it."
    )
    await expect(error).to_contain_text("HTTP 403")
    await expect(page.get_by_test_id("token-input")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    asked = len(standin.requests)
    await page.wait_for_timeout(2000)
    assert len(standin.requests) == asked  # no retry loop


async def test_the_board_in_russian(
    browser: Browser, standin: StandInGateway, watch: PageWatch
) -> None:
    standin.board = board([ringing_call(), talking_call()])
    context, page = await new_page(browser, watch, locale="ru-RU")
    try:
        await sign_in(page, standin)
        await expect(page.locator("html")).to_have_attribute("lang", "ru")
        await expect(page).to_have_title("Табло · vats-bridge")
        ringing = page.locator('#calls-body [data-call-id="1"]')
        await expect(ringing.get_by_test_id("board-call-status")).to_have_text("Вызов")
        await expect(ringing).to_contain_text("ожидание")
        talking = page.locator('#calls-body [data-call-id="2"]')
        await expect(talking.get_by_test_id("board-call-who")).to_have_text("Говорит: Anna Petrova")
        await expect(page.get_by_test_id("board-employee-state")).to_have_text(
            ["На звонке", "Звонит телефон", "Свободен"]
        )
        await expect(page.get_by_test_id("board-day")).to_have_text(
            re.compile(r"^8 марта 2026 г\.?, Europe/Moscow$")
        )
        await expect(page.locator("#figures-table thead")).to_contain_text("Доля отвеченных")
    finally:
        await context.close()
    watch.check()


async def test_the_board_fits_a_narrow_screen(
    browser: Browser, standin: StandInGateway, watch: PageWatch, artifacts_dir: Path
) -> None:
    standin.board = board([ringing_call(), talking_call()])
    context, page = await new_page(
        browser, watch, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    try:
        await sign_in(page, standin)
        await expect(page.locator("#calls-body > tr")).to_have_count(2)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        await page.screenshot(path=str(artifacts_dir / "board-standin-phone.png"), full_page=True)
    finally:
        await context.close()
    watch.check()
