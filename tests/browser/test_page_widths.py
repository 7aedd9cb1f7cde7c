"""The board and the agent page on desktop screens, 1024 to 1920 pixels wide, in English and in
Russian: every column and every row fits its box, nothing is cut off behind a scroll bar."""

# ruff: noqa: RUF001 - the page's Russian words are what these tests read.

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from .conftest import PageWatch, new_page
from .standin import EMPLOYEE_TOKEN, SUPERVISOR_TOKEN, StandInGateway, iso
from .test_board_page import board, board_call

pytestmark = pytest.mark.browser

SCREENS = [(1024, 768), (1280, 800), (1440, 900), (1920, 1080)]
LOCALES = ["en-US", "ru-RU"]
SCREENSHOTS = Path("/tmp")
LONG_CHANNEL = "Customer support line, Moscow head office (tariffs and billing)"

# What of an element's content lies outside the box that clips it: elements whose overflow is
# not visible and whose content is wider than their box, except text shortened on purpose (an
# ellipsis with the whole text in its title) and text hidden for screen readers only.
CLIPPED = """
(root) => {
  const clipped = [];
  for (const el of root.querySelectorAll('*')) {
    if (!el.getClientRects().length || el.closest('.visually-hidden')) continue;
    const style = getComputedStyle(el);
    if (style.overflowX === 'visible' || el.scrollWidth <= el.clientWidth + 1) continue;
    const words = el.textContent.trim();
    const shortened = style.textOverflow === 'ellipsis' && el.title === words;
    if (!shortened) clipped.push(`${el.tagName} ${el.className}: ${words.slice(0, 60)}`);
  }
  return clipped;
}
"""

# Elements that stick out of the viewport's width.
OUTSIDE = """
(root) => {
  const width = document.documentElement.clientWidth;
  return [...root.querySelectorAll('*')]
    .filter((el) => el.getClientRects().length && !el.closest('.visually-hidden'))
    .filter((el) => {
      const box = el.getBoundingClientRect();
      return box.width > 0 && (box.left < -0.5 || box.right > width + 0.5);
    })
    .map((el) => `${el.tagName} ${el.className}: ${el.textContent.trim().slice(0, 60)}`);
}
"""

# How many lines an element's text takes.
LINES = """
(el) => {
  const range = document.createRange();
  range.selectNodeContents(el);
  return new Set([...range.getClientRects()].map((box) => Math.round(box.top))).size;
}
"""


def busy_board() -> dict[str, Any]:
    """A day with long channel names, big numbers and more people than fit in one line."""
    figures = [
        {
            "channel_id": 1,
            "channel_name": LONG_CHANNEL,
            "incoming": 12840,
            "answered": 11972,
            "missed": 868,
            "answer_rate": 11972 / 12840,
            "average_wait_seconds": 74.4,
            "average_talk_seconds": 3725.0,
            "open_callbacks": 1234,
        },
        {
            "channel_id": 2,
            "channel_name": "Отдел продаж и партнёрских программ",
            "incoming": 310,
            "answered": 296,
            "missed": 14,
            "answer_rate": 296 / 310,
            "average_wait_seconds": 9.0,
            "average_talk_seconds": 412.0,
            "open_callbacks": 3,
        },
        {
            "channel_id": 3,
            "channel_name": "+7 495 000-00-00",
            "incoming": 0,
            "answered": 0,
            "missed": 0,
            "answer_rate": None,
            "average_wait_seconds": None,
            "average_talk_seconds": None,
            "open_callbacks": 0,
        },
    ]
    names = [
        "Anna Petrova",
        "Boris Ivanov",
        "Vera Sokolova",
        "Konstantin Konstantinopolsky",
        "Екатерина Александровна Воскресенская",
        "Oleg Kim",
    ]
    states = ["on-call", "ringing", "free"]
    employees = [
        {"employee_id": n, "name": name, "state": states[n % 3], "call_id": None}
        for n, name in enumerate(names, start=1)
    ]
    answered = iso(datetime.now(UTC) - timedelta(minutes=1, seconds=30))
    calls = [
        board_call(1, "ringing", channel_name=LONG_CHANNEL),
        board_call(
            2,
            "in-progress",
            answered_at=answered,
            user_id=4,
            user_name="Konstantin Konstantinopolsky",
            channel_name="Отдел продаж и партнёрских программ",
            contact_name="ООО «Северное сияние», бухгалтерия",
        ),
    ]
    return board(calls, figures=figures, employees=employees)


def screen_id(screen: tuple[int, int]) -> str:
    return f"{screen[0]}x{screen[1]}"


async def assert_fits(page: Page, selector: str) -> None:
    root = page.locator(selector)
    assert await root.evaluate(CLIPPED) == [], f"content cut off in {selector}"
    assert await root.evaluate(OUTSIDE) == [], f"content outside the screen in {selector}"
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0


@pytest.mark.parametrize("screen", SCREENS, ids=screen_id)
@pytest.mark.parametrize("locale", LOCALES)
async def test_the_board_fits_a_desktop_screen(
    browser: Browser,
    standin: StandInGateway,
    watch: PageWatch,
    locale: str,
    screen: tuple[int, int],
) -> None:
    width, height = screen
    standin.board = busy_board()
    context, page = await new_page(
        browser, watch, locale=locale, viewport={"width": width, "height": height}
    )
    try:
        await page.goto(f"{standin.url}/board")
        await page.fill("#token-input", SUPERVISOR_TOKEN)
        await page.click("#token-submit")
        figures = page.get_by_test_id("figures-table")
        await expect(figures.locator("tbody tr")).to_have_count(3)
        await expect(page.locator("#calls-body > tr")).to_have_count(2)

        # The whole figures table is in its box: no column behind a scroll bar.
        table = await figures.evaluate(
            "t => ({table: t.scrollWidth, box: t.parentElement.clientWidth})"
        )
        assert table["table"] <= table["box"], f"figures {table['table']} px in {table['box']} px"
        await figures.evaluate(
            "t => window.scrollTo(0, t.getBoundingClientRect().top + window.scrollY - 100)"
        )
        headers = figures.locator("thead th")
        await expect(headers).to_have_count(8)
        for index in range(8):
            await expect(headers.nth(index)).to_be_in_viewport(ratio=1)
        await assert_fits(page, "#board-view")

        # A channel's name takes one line, shortened if it must be, and its title is the name.
        for row in await figures.locator("tbody th").all():
            assert await row.evaluate(LINES) == 1
            await expect(row).to_have_attribute("title", (await row.text_content() or "").strip())
        await page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar on top, for the picture
        await page.screenshot(path=str(SCREENSHOTS / f"board-{locale}-{width}.png"), full_page=True)
    finally:
        await context.close()
    watch.check()


def agent_history() -> list[dict[str, Any]]:
    started = datetime.now(UTC) - timedelta(minutes=30)
    call: dict[str, Any] = {
        "call_id": 7,
        "ticket_id": 8007,
        "channel_id": 1,
        "channel_name": LONG_CHANNEL,
        "pbx_call_id": None,
        "direction": "incoming",
        "phone": "+74951234567",
        "phone_display": "+7 495 123-45-67",
        "contact_name": "ООО «Северное сияние», бухгалтерия",
        "call_status": "answered",
        "user_id": 4,
        "user_name": "Konstantin Konstantinopolsky",
        "created_at": iso(started),
        "answered_at": iso(started + timedelta(seconds=74)),
        "ended_at": iso(started + timedelta(seconds=3800)),
        "wait_seconds": 74.0,
        "talk_duration_seconds": 3726.0,
        "comments": [
            {
                "text": "asks for a refund of the March invoice",
                "author": "Anna Petrova",
                "created_at": iso(started),
            },
        ],
        "audio_record": None,
    }
    return [call]


def agent_callbacks() -> list[dict[str, Any]]:
    first = datetime.now(UTC) - timedelta(hours=26, minutes=5)
    return [
        {
            "callback_id": 11,
            "channel_id": 1,
            "channel_name": LONG_CHANNEL,
            "phone": "+74951110011",
            "phone_display": "+7 495 111-00-11",
            "contact_name": "Екатерина Александровна Воскресенская",
            "attempts": 12,
            "first_missed_at": iso(first),
            "last_missed_at": iso(first + timedelta(hours=3)),
            "last_call_id": 511,
            "last_status": "canceled",
            "state": "open",
            "resolved_at": None,
            "resolution": None,
            "resolved_by_employee_id": None,
            "resolved_by_name": None,
            "resolved_by_call_id": None,
        }
    ]


def agent_card(call_id: int) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "ticket_id": 8500 + call_id,
        "channel_id": 1,
        "channel_name": LONG_CHANNEL,
        "direction": "incoming",
        "phone": "+74951234567",
        "phone_display": "+7 495 123-45-67",
        "contact_name": "ООО «Северное сияние», бухгалтерия",
        "call_status": "in-progress",
        "user_id": 4,
        "user_name": "Konstantin Konstantinopolsky",
        "pbx_call_id": "pbx-0123456789abcdef",
        "created_at": iso(datetime.now(UTC)),
        "audio_record": None,
    }


@pytest.mark.parametrize("screen", SCREENS, ids=screen_id)
@pytest.mark.parametrize("locale", LOCALES)
async def test_the_agent_page_fits_a_desktop_screen(
    browser: Browser,
    standin: StandInGateway,
    watch: PageWatch,
    locale: str,
    screen: tuple[int, int],
) -> None:
    width, height = screen
    standin.history.items = agent_history()
    standin.callbacks.items = agent_callbacks()
    context, page = await new_page(
        browser, watch, locale=locale, viewport={"width": width, "height": height}
    )
    try:
        streams = standin.accepted_streams
        await page.goto(f"{standin.url}/agent")
        await page.fill("#token-input", EMPLOYEE_TOKEN)
        await page.click("#token-submit")
        await standin.wait_for_streams(streams + 1)
        for call_id in (1, 2, 3):
            await standin.push("show", agent_card(call_id))
        await expect(page.locator("#cards > li")).to_have_count(3)
        await page.wait_for_timeout(500)  # the arrival animation, for the screenshot
        await assert_fits(page, "#view-now")
        await page.screenshot(path=str(SCREENSHOTS / f"agent-now-{locale}-{width}.png"))

        for view, rows in (("recent", "#recent-list > li"), ("missed", "#missed-list > li")):
            await page.get_by_test_id(f"tab-{view}").click()
            await expect(page.locator(rows)).to_have_count(1)
            await assert_fits(page, f"#view-{view}")
            await assert_fits(page, ".topbar")
            await page.screenshot(path=str(SCREENSHOTS / f"agent-{view}-{locale}-{width}.png"))
    finally:
        await context.close()
    watch.check()
