"""The agent page's Recent and Missed views, its languages and its policy, against the
stand-in gateway whose lists and events the test controls."""

# ruff: noqa: RUF001 - the page's Russian words are what these tests read.

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from vocabulary import ACTIVE_STATUSES, DIRECTION, EMPLOYEE_STATE, STATUS

from .conftest import PageWatch, new_page
from .pbx import tone_wav
from .standin import EMPLOYEE_TOKEN, HISTORY_PATH, StandInGateway, iso

pytestmark = pytest.mark.browser

MOSCOW = ZoneInfo("Europe/Moscow")


def summary(call_id: int, created_at: datetime, **changes: Any) -> dict[str, Any]:
    """A call as the history lists it."""
    call: dict[str, Any] = {
        "call_id": call_id,
        "ticket_id": 8000 + call_id,
        "channel_id": 1,
        "channel_name": "Support line",
        "pbx_call_id": None,
        "direction": "incoming",
        "phone": "+74951234567",
        "phone_display": "+7 495 123-45-67",
        "contact_name": "Ivan Smirnov",
        "call_status": "answered",
        "user_id": 1,
        "user_name": "Anna Petrova",
        "created_at": iso(created_at),
        "answered_at": iso(created_at + timedelta(seconds=12)),
        "ended_at": iso(created_at + timedelta(seconds=200)),
        "wait_seconds": 12.0,
        "talk_duration_seconds": 188.0,
        "comments": [],
        "audio_record": None,
    }
    call.update(changes)
    return call


def callback(callback_id: int, phone: str, attempts: int, first: datetime) -> dict[str, Any]:
    return {
        "callback_id": callback_id,
        "channel_id": 1,
        "channel_name": "Support line",
        "phone": phone,
        "phone_display": f"+7 {phone[2:5]} {phone[5:8]}-{phone[8:10]}-{phone[10:]}",
        "contact_name": "",
        "attempts": attempts,
        "first_missed_at": iso(first),
        "last_missed_at": iso(first + timedelta(minutes=attempts)),
        "last_call_id": 500 + callback_id,
        "last_status": "missed",
        "state": "open",
        "resolved_at": None,
        "resolution": None,
        "resolved_by_employee_id": None,
        "resolved_by_name": None,
        "resolved_by_call_id": None,
    }


def card(call_id: int, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "call_id": call_id,
        "ticket_id": 8000 + call_id,
        "channel_id": 1,
        "channel_name": "Support line",
        "direction": "incoming",
        "phone": "+74957654321",
        "phone_display": "+7 495 765-43-21",
        "contact_name": "",
        "call_status": "ringing",
        "user_id": None,
        "user_name": "",
        "pbx_call_id": None,
        "created_at": iso(datetime.now(UTC)),
        "audio_record": None,
    }
    data.update(changes)
    return data


async def sign_in(page: Page, standin: StandInGateway) -> None:
    streams = standin.accepted_streams
    await page.goto(f"{standin.url}/agent")
    await page.fill("#token-input", EMPLOYEE_TOKEN)
    await page.click("#token-submit")
    await standin.wait_for_streams(streams + 1)
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")


def moscow_today(hour: int, minute: int) -> datetime:
    return datetime.now(MOSCOW).replace(hour=hour, minute=minute, second=0, microsecond=0)


async def test_recent_lists_finished_calls_newest_first_a_page_at_a_time(
    page: Page, standin: StandInGateway
) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    standin.history.items = [
        summary(call_id, start + timedelta(minutes=call_id)) for call_id in range(60, 0, -1)
    ]
    await sign_in(page, standin)
    await page.get_by_test_id("tab-recent").click()
    rows = page.locator("#recent-list > li")
    await expect(rows).to_have_count(25)
    await expect(rows.first).to_have_attribute("data-call-id", "60")
    await expect(rows.first.get_by_test_id("recent-contact")).to_have_text("Ivan Smirnov")

    # Scrolling down to the end of the list brings the next page, and the next.
    await page.get_by_test_id("recent-more").scroll_into_view_if_needed()
    await expect(rows).to_have_count(50)
    await page.get_by_test_id("recent-more").scroll_into_view_if_needed()
    await expect(rows).to_have_count(60)
    await expect(page.get_by_test_id("recent-more")).to_be_hidden()
    await expect(rows.last).to_have_attribute("data-call-id", "1")

    asked = [r for r in standin.requests if r.path == HISTORY_PATH]
    statuses = set((asked[0].param("status") or "").split(","))
    # Every finished call: each status but the active ones.
    assert statuses == set(STATUS.names) - set(ACTIVE_STATUSES)
    assert {r.param("page_size") for r in asked} == {"25"}


async def test_a_row_shows_the_call(
    page: Page, standin: StandInGateway, artifacts_dir: Path
) -> None:
    started = datetime.now(UTC) - timedelta(minutes=20)
    comments = [
        {"text": "asks for a refund", "author": "Anna Petrova", "created_at": iso(started)},
        {"text": "<b>not markup</b>", "author": "", "created_at": iso(started)},
    ]
    standin.history.items = [summary(7, started, comments=comments, contact_name="")]
    await sign_in(page, standin)
    await page.get_by_test_id("tab-recent").click()
    row = page.locator('#recent-list [data-call-id="7"]')
    await expect(row.get_by_test_id("recent-phone")).to_have_text("+7 495 123-45-67")
    await expect(row.get_by_test_id("recent-phone")).to_have_attribute("title", "+74951234567")
    await expect(row.get_by_test_id("recent-phone")).to_have_attribute("href", "tel:+74951234567")
    await expect(row.get_by_test_id("recent-contact")).to_have_text("Unknown contact")
    await expect(row.get_by_test_id("recent-wait")).to_have_text("0:12")
    await expect(row.get_by_test_id("recent-talk")).to_have_text("3:08")
    await expect(row.get_by_test_id("recent-ticket")).to_have_text("#8007")
    await expect(row.get_by_test_id("recent-comments").locator("li")).to_have_count(2)
    await expect(row.get_by_test_id("recent-comments")).to_contain_text("<b>not markup</b>")
    await expect(row.locator("b")).to_have_count(0)
    await expect(row.get_by_test_id("recent-audio")).to_be_hidden()
    await page.screenshot(path=str(artifacts_dir / "agent-standin-recent.png"))


async def test_recent_follows_card_events_and_a_playing_recording_keeps_playing(
    page: Page, standin: StandInGateway
) -> None:
    wav = tone_wav(30.0)
    first = summary(1, datetime.now(UTC) - timedelta(hours=1))
    first["audio_record"] = standin.add_recording("one.wav", wav)
    standin.history.items = [first]
    await sign_in(page, standin)
    await page.get_by_test_id("tab-recent").click()
    audio = page.locator('#recent-list [data-call-id="1"]').get_by_test_id("recent-audio")
    playing_src = await audio.get_attribute("src")
    await audio.evaluate("a => { a.dataset.marker = 'same'; a.muted = true; return a.play(); }")
    await page.wait_for_function("a => a.currentTime > 0.3", arg=await audio.element_handle())

    # A call ends: it shows in Recent at once, and the refresh that follows re-signs every
    # recording link; the player that is playing keeps its own.
    ended = card(2, call_status="missed")
    standin.history.items = [summary(2, datetime.now(UTC), call_status="missed"), first]
    first["audio_record"] = standin.add_recording("one.wav", wav)
    await standin.push("show", card(2))
    await standin.push("hide", {**ended, "reason": "final"})
    await expect(page.locator("#recent-list > li").first).to_have_attribute("data-call-id", "2")
    await expect(page.locator('#recent-list [data-call-id="2"]')).to_contain_text("Missed")
    # The refresh brought the call's record (the card had no employee name).
    await expect(
        page.locator('#recent-list [data-call-id="2"]').get_by_test_id("recent-employee")
    ).to_have_text("Anna Petrova")
    assert await audio.get_attribute("src") != first["audio_record"]
    await expect(audio).to_have_attribute("data-marker", "same")
    assert await audio.get_attribute("src") == playing_src
    assert await audio.evaluate("a => !a.paused && a.currentTime > 0.3")


async def test_missed_lists_open_callbacks_with_the_count_on_its_tab(
    page: Page, standin: StandInGateway, artifacts_dir: Path
) -> None:
    first = datetime.now(UTC) - timedelta(hours=2, minutes=5)
    standin.callbacks.items = [
        callback(11, "+74951110011", 3, first),
        callback(12, "+74951110012", 1, first + timedelta(hours=1)),
    ]
    await sign_in(page, standin)
    count = page.get_by_test_id("missed-count")
    await expect(count).to_have_text("2")
    await page.get_by_test_id("tab-missed").click()
    rows = page.locator("#missed-list > li")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_have_attribute("data-callback-id", "11")  # oldest waiting first
    top = rows.first
    await expect(top.get_by_test_id("missed-phone")).to_have_text("+7 495 111-00-11")
    await expect(top.get_by_test_id("missed-phone")).to_have_attribute("title", "+74951110011")
    await expect(top.get_by_test_id("missed-attempts")).to_have_text("3 missed calls")
    await expect(rows.nth(1).get_by_test_id("missed-attempts")).to_have_text("1 missed call")
    await expect(top.get_by_test_id("missed-call")).to_have_attribute("href", "tel:+74951110011")
    await expect(top).to_contain_text("waiting 2 hr 5 min")
    # The last attempt is the group's latest call (JavaScript's ISO form has milliseconds).
    last = datetime.fromisoformat(standin.callbacks.items[0]["last_missed_at"])
    stamp = f"{last:%Y-%m-%dT%H:%M:%S}.{last.microsecond // 1000:03d}Z"
    await expect(top.get_by_test_id("missed-last")).to_have_attribute("datetime", stamp)
    await page.screenshot(path=str(artifacts_dir / "agent-standin-missed.png"))

    await top.get_by_test_id("missed-mark").click()
    await expect(page.locator('#missed-list [data-callback-id="11"]')).to_have_count(0)
    await expect(count).to_have_text("1")
    assert standin.called_back == ["11"]
    marks = [r for r in standin.requests if r.method == "POST" and "called-back" in r.path]
    assert [r.bearer for r in marks] == [EMPLOYEE_TOKEN]


async def test_the_missed_count_follows_the_calls_live(page: Page, standin: StandInGateway) -> None:
    await sign_in(page, standin)
    count = page.get_by_test_id("missed-count")
    await expect(count).to_be_hidden()
    standin.callbacks.items = [callback(21, "+74951110021", 1, datetime.now(UTC))]
    await standin.push("show", card(21))
    await expect(count).to_have_text("1")
    standin.callbacks.items = []
    await standin.push("update", card(21, call_status="in-progress"))
    await expect(count).to_be_hidden()


async def test_a_russian_browser_gets_russian_words_plurals_and_24_hour_times(
    browser: Browser, standin: StandInGateway, watch: PageWatch
) -> None:
    afternoon = moscow_today(15, 7)
    yesterday = afternoon - timedelta(days=1)
    standin.history.items = [summary(2, afternoon), summary(1, yesterday, call_status="busy")]
    standin.callbacks.items = [
        callback(31, "+74951110031", 2, datetime.now(UTC)),
        callback(32, "+74951110032", 5, datetime.now(UTC)),
        callback(33, "+74951110033", 21, datetime.now(UTC)),
    ]
    context, page = await new_page(browser, watch, locale="ru-RU", timezone_id="Europe/Moscow")
    try:
        await sign_in(page, standin)
        await expect(page.locator("html")).to_have_attribute("lang", "ru")
        await expect(page).to_have_title("Звонки · vats-bridge")
        await expect(page.get_by_test_id("tab-now")).to_contain_text("Сейчас")
        await expect(page.get_by_test_id("connection-status")).to_have_text("На связи")

        await page.get_by_test_id("tab-recent").click()
        today = page.locator('#recent-list [data-call-id="2"]')
        await expect(today.get_by_test_id("recent-status")).to_have_text("Отвечен")
        await expect(today.get_by_test_id("recent-direction")).to_have_text("Входящий")
        await expect(today.get_by_test_id("recent-started")).to_have_text("15:07")
        before = page.locator('#recent-list [data-call-id="1"]')
        await expect(before.get_by_test_id("recent-status")).to_have_text("Занято")
        day = f"{yesterday.day} " + r"[а-я]+\.?, 15:07"
        await expect(before.get_by_test_id("recent-started")).to_have_text(re.compile(f"^{day}$"))

        await page.get_by_test_id("tab-missed").click()
        attempts = page.get_by_test_id("missed-attempts")
        await expect(attempts).to_have_text(
            ["2 пропущенных звонка", "5 пропущенных звонков", "21 пропущенный звонок"]
        )
        await expect(page.get_by_test_id("missed-mark").first).to_have_text("Отметить: перезвонили")
    finally:
        await context.close()
    watch.check()


async def test_an_english_browser_gets_a_24_hour_clock_too(
    browser: Browser, standin: StandInGateway, watch: PageWatch
) -> None:
    standin.history.items = [summary(2, moscow_today(15, 7))]
    context, page = await new_page(browser, watch, locale="en-US", timezone_id="Europe/Moscow")
    try:
        await sign_in(page, standin)
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await page.get_by_test_id("tab-recent").click()
        started = page.locator('#recent-list [data-call-id="2"]').get_by_test_id("recent-started")
        await expect(started).to_have_text("15:07")
    finally:
        await context.close()
    watch.check()


async def test_the_language_switch_is_remembered(page: Page, standin: StandInGateway) -> None:
    await sign_in(page, standin)
    await standin.push("show", card(41))
    status = page.locator('#cards [data-call-id="41"]').get_by_test_id("card-status")
    await expect(status).to_have_text("Ringing")

    await page.get_by_test_id("lang-select").select_option("ru")
    await expect(page.locator("html")).to_have_attribute("lang", "ru")
    await expect(status).to_have_text("Вызов")  # what is shown already changes too
    await expect(page.get_by_test_id("tab-recent")).to_contain_text("Недавние")

    await page.reload()
    await expect(page.locator("html")).to_have_attribute("lang", "ru")
    await expect(page.get_by_test_id("sign-out")).to_have_text("Выйти")
    assert await page.evaluate("localStorage.getItem('vats-bridge.lang')") == "ru"


async def test_the_views_are_tabs_reachable_by_keyboard_and_by_address(
    page: Page, standin: StandInGateway
) -> None:
    await sign_in(page, standin)
    now = page.get_by_test_id("tab-now")
    await expect(now).to_have_attribute("aria-selected", "true")
    await now.focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.get_by_test_id("tab-recent")).to_be_focused()
    await expect(page.get_by_test_id("view-recent")).to_be_visible()
    await expect(page.get_by_test_id("view-now")).to_be_hidden()
    assert page.url.endswith("#recent")

    await page.goto(f"{standin.url}/agent#missed")
    await expect(page.get_by_test_id("tab-missed")).to_have_attribute("aria-selected", "true")
    await expect(page.get_by_test_id("view-missed")).to_be_visible()


async def test_the_policy_watch_sees_a_violation(browser: Browser, standin: StandInGateway) -> None:
    """The pages' tests report no CSP violation; this shows such a report would be seen."""
    watch = PageWatch()
    context, page = await new_page(browser, watch)
    try:
        await page.goto(f"{standin.url}/agent")
        await page.evaluate("document.body.setAttribute('style', 'color: red')")
        for _ in range(50):
            if watch.csp_violations:
                break
            await page.wait_for_timeout(100)
    finally:
        await context.close()
    with pytest.raises(AssertionError, match="Content-Security-Policy"):
        watch.check()


async def test_every_wire_name_has_words_in_every_language(
    page: Page, standin: StandInGateway
) -> None:
    await page.goto(f"{standin.url}/board")
    keys = [f"status.{name}" for name in STATUS.names]
    keys += [f"direction.{name}" for name in DIRECTION.names]
    keys += [f"state.{name}" for name in EMPLOYEE_STATE.names]
    missing = await page.evaluate(
        """keys => VatsI18n.languages.flatMap(
            (language) => keys.filter((key) => !VatsI18n.has(language, key))
                              .map((key) => `${language}: ${key}`))""",
        keys,
    )
    assert missing == []
    # The page's own copy of the names is the gateway's.
    served = await page.evaluate("VATS_VOCABULARY")
    assert served["statuses"] == list(STATUS.names)
