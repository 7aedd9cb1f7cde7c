"""The agent page's three views on the real gateway and core: a call that ends moves from Now
to Recent with a recording that plays; a missed call waits in Missed until it is called back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.conftest import LiveStack

from .conftest import PageWatch, new_page
from .pbx import Pbx, tone_wav

pytestmark = pytest.mark.browser

ANNA = "demo-anna"  # employee 1 in seed/demo.json
RECORDING_SECONDS = 4.0


@pytest.fixture
async def pbx(live_stack: LiveStack) -> AsyncIterator[Pbx]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield Pbx(client, live_stack.calls_url)


async def api(stack: LiveStack, token: str, method: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10) as client:
        response = await client.request(
            method, f"/api/v2/telephony{path}", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.is_success, response.text
    return response.json()


async def open_agent(page: Page, stack: LiveStack, token: str = ANNA) -> None:
    await page.goto(f"{stack.http_url}/agent")
    await page.fill("#token-input", token)
    await page.click("#token-submit")
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")


def no_token_in_urls(watch: PageWatch, *tokens: str) -> None:
    leaked = [url for url in watch.urls if any(token in url for token in tokens)]
    assert leaked == [], f"the page put a token in a URL: {leaked}"


def missed_row(page: Page, raw_phone: str) -> Locator:
    phone = f'[data-testid="missed-phone"][title="{raw_phone}"]'
    return page.locator(f'[data-testid="missed-callback"]:has({phone})')


async def test_a_call_that_ends_moves_from_now_to_recent_and_its_recording_plays(
    page: Page, live_stack: LiveStack, pbx: Pbx, watch: PageWatch
) -> None:
    await open_agent(page, live_stack)
    # Set in this document only: still there at the end proves the page never reloaded.
    await page.evaluate("window.sameDocument = true")

    created = await pbx.create("+74957000001")
    call_id = created["call_id"]
    card = page.locator(f'#cards [data-call-id="{call_id}"]')
    await expect(card.get_by_test_id("card-status")).to_have_text("Ringing")
    await expect(card.get_by_test_id("card-phone")).to_have_text("+7 495 700-00-01")
    await expect(card.get_by_test_id("card-phone")).to_have_attribute("title", "+74957000001")

    await pbx.update(call_id, "in-progress", user_id=1, comment="wants the invoice again")
    await expect(card.get_by_test_id("card-status")).to_have_text("In progress")
    await pbx.update(call_id, "answered", recording=tone_wav(RECORDING_SECONDS))
    await expect(card).to_have_count(0)

    await page.get_by_test_id("tab-recent").click()
    row = page.locator(f'#recent-list [data-call-id="{call_id}"]')
    await expect(row.get_by_test_id("recent-status")).to_have_text("Answered")
    await expect(row.get_by_test_id("recent-direction")).to_have_text("Incoming")
    await expect(row.get_by_test_id("recent-phone")).to_have_text("+7 495 700-00-01")
    await expect(row.get_by_test_id("recent-phone")).to_have_attribute("title", "+74957000001")
    await expect(row.get_by_test_id("recent-ticket")).to_have_text(f"#{created['ticket_id']}")
    await expect(row.get_by_test_id("recent-employee")).to_have_text("Anna Petrova")
    await expect(row.get_by_test_id("recent-comments")).to_contain_text("wants the invoice again")
    await expect(row.get_by_test_id("recent-wait")).to_have_text(re.compile(r"^\d+:\d\d$"))
    await expect(row.get_by_test_id("recent-talk")).to_have_text(re.compile(r"^\d+:\d\d$"))
    await expect(row.get_by_test_id("recent-started")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    # Newest first: the call just ended heads the list.
    await expect(page.locator("#recent-list > li").first).to_have_attribute(
        "data-call-id", str(call_id)
    )
    assert await page.evaluate("window.sameDocument === true")

    audio = row.get_by_test_id("recent-audio")
    await expect(audio).to_be_visible()
    # Muted, so the browser's autoplay rule allows play() without a click.
    await audio.evaluate("a => { a.muted = true; return a.play(); }")
    await page.wait_for_function(
        "a => a.readyState >= 2", arg=await audio.element_handle(), timeout=15_000
    )
    await audio.evaluate("a => a.pause()")
    # Seeking needs Range: the position moves to where it was asked, with no new load.
    moved = await audio.evaluate(
        """a => new Promise((resolve) => {
            a.addEventListener('seeked', () => resolve(a.currentTime), { once: true });
            a.currentTime = 2.5;
        })"""
    )
    assert 2.4 <= moved <= 2.6
    assert await audio.evaluate("a => a.seekable.length > 0 && a.seekable.end(0) >= 3.9")
    # The play is recorded as Anna's, from where her browser asked: its link was made for
    # her token, not for the gateway that fetched the recording on her behalf.
    played = urlsplit(await audio.evaluate("a => a.currentSrc"))
    recording_id = played.path.rsplit("/", 1)[-1]
    log = await api(live_stack, "demo-admin", "GET", "/audit?action=recording.downloaded")
    newest = next(e for e in log["data"] if e["target"] == recording_id)
    assert (newest["actor"]["role"], newest["actor"]["employee_id"]) == ("employee", 1)
    assert parse_qs(played.query)["token"] == [newest["actor"]["token_id"]]
    assert newest["address"].startswith("127.0.0.1 via ")

    # The details dialog tells the whole story of the call.
    await row.get_by_test_id("recent-ticket").click()
    await expect(page.get_by_test_id("details-history")).to_contain_text("In progress")
    await expect(page.get_by_test_id("details-history")).to_contain_text("Answered")
    await expect(page.get_by_test_id("details-comments")).to_contain_text("wants the invoice")
    await expect(page.get_by_test_id("details-recordings").locator("audio")).to_have_count(1)
    await page.get_by_test_id("details-close").click()
    no_token_in_urls(watch, ANNA)


async def test_a_missed_call_waits_in_missed_with_its_count_until_called_back(
    page: Page, live_stack: LiveStack, pbx: Pbx, watch: PageWatch
) -> None:
    await open_agent(page, live_stack)
    before = (await api(live_stack, ANNA, "GET", "/callbacks"))["open_count"]
    tab_count = page.get_by_test_id("missed-count")

    for _ in range(2):
        call = await pbx.create("+74957000002")
        await pbx.update(call["call_id"], "missed")
    await expect(tab_count).to_have_text(str(before + 1))

    await page.get_by_test_id("tab-missed").click()
    row = missed_row(page, "+74957000002")
    await expect(row.get_by_test_id("missed-phone")).to_have_text("+7 495 700-00-02")
    await expect(row.get_by_test_id("missed-attempts")).to_have_text("2 missed calls")
    await expect(row.get_by_test_id("missed-call")).to_have_attribute("href", "tel:+74957000002")
    await expect(row.get_by_test_id("missed-last-status")).to_have_text("Missed")

    await row.get_by_test_id("missed-mark").click()
    await expect(row).to_have_count(0)
    if before:
        await expect(tab_count).to_have_text(str(before))
    else:
        await expect(tab_count).to_be_hidden()
    resolved = await api(live_stack, ANNA, "GET", "/callbacks?state=resolved")
    mine = [c for c in resolved["data"] if c["phone"] == "+74957000002"]
    assert len(mine) == 1
    assert mine[0]["resolution"] == "called-back"
    assert mine[0]["resolved_by_employee_id"] == 1
    no_token_in_urls(watch, ANNA)


async def test_a_missed_call_leaves_missed_when_an_outgoing_call_to_it_is_answered(
    page: Page, live_stack: LiveStack, pbx: Pbx, watch: PageWatch
) -> None:
    await open_agent(page, live_stack)
    await page.get_by_test_id("tab-missed").click()
    call = await pbx.create("+74957000003")
    await pbx.update(call["call_id"], "busy")
    row = missed_row(page, "+74957000003")
    await expect(row.get_by_test_id("missed-attempts")).to_have_text("1 missed call")
    with_it = await page.get_by_test_id("missed-count").text_content()

    # Nobody marks it: the answered callback resolves it, and the page follows on its own.
    back = await pbx.create("+74957000003", direction="outgoing")
    await pbx.update(back["call_id"], "in-progress", user_id=1)
    await expect(row).to_have_count(0)
    assert with_it is not None
    await expect(page.get_by_test_id("missed-count")).not_to_have_text(with_it)
    resolved = await api(live_stack, ANNA, "GET", "/callbacks?state=resolved")
    mine = [c for c in resolved["data"] if c["phone"] == "+74957000003"]
    assert [(c["resolution"], c["resolved_by_call_id"]) for c in mine] == [
        ("answered", back["call_id"])
    ]
    no_token_in_urls(watch, ANNA)


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        (
            "ru-RU",
            {
                "lang": "ru",
                "tabs": ["Сейчас", "Недавние", "Пропущенные"],
                "status": "Вызов",
                "direction": "Входящий",
                "sign_out": "Выйти",
                "board_column": "Входящие",
                "board_who": "Вызывает: Anna Petrova",
            },
        ),
        (
            "en-US",
            {
                "lang": "en",
                "tabs": ["Now", "Recent", "Missed"],
                "status": "Ringing",
                "direction": "Incoming",
                "sign_out": "Sign out",
                "board_column": "Incoming",
                "board_who": "Rings for Anna Petrova",
            },
        ),
    ],
)
async def test_the_pages_speak_the_browsers_language(
    browser: Browser,
    live_stack: LiveStack,
    pbx: Pbx,
    locale: str,
    words: dict[str, Any],
) -> None:
    watch = PageWatch()
    context, page = await new_page(browser, watch, locale=locale, timezone_id="Europe/Moscow")
    try:
        served = await page.goto(f"{live_stack.http_url}/agent")
        assert served is not None
        # The pages are served under a strict policy: no violation may be reported under it.
        assert "script-src 'self'" in (await served.header_value("content-security-policy") or "")
        await expect(page.locator("html")).to_have_attribute("lang", words["lang"])
        await page.fill("#token-input", ANNA)
        await page.click("#token-submit")
        await expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")
        tabs = page.get_by_role("tab")
        for index, name in enumerate(words["tabs"]):
            await expect(tabs.nth(index)).to_contain_text(name)
        await expect(page.get_by_test_id("sign-out")).to_have_text(words["sign_out"])

        call = await pbx.create("+74957000020")
        card = page.locator(f'#cards [data-call-id="{call["call_id"]}"]')
        await expect(card.get_by_test_id("card-status")).to_have_text(words["status"])
        await expect(card.get_by_test_id("card-direction")).to_have_text(words["direction"])
        # 24-hour local time, in the browser's time zone.
        await expect(card.get_by_test_id("card-started")).to_have_text(re.compile(r"^\d\d:\d\d$"))

        await page.goto(f"{live_stack.http_url}/board")
        await expect(page.locator("html")).to_have_attribute("lang", words["lang"])
        await page.fill("#token-input", "demo-supervisor")
        await page.click("#token-submit")
        row = page.locator(f'#calls-body [data-call-id="{call["call_id"]}"]')
        await expect(row.get_by_test_id("board-call-status")).to_have_text(words["status"])
        await expect(row.get_by_test_id("board-call-who")).to_have_text(words["board_who"])
        await expect(page.locator("#figures-table thead")).to_contain_text(words["board_column"])
        await pbx.update(call["call_id"], "canceled")
        await expect(row).to_have_count(0)
    finally:
        await context.close()
    watch.check()
    no_token_in_urls(watch, ANNA, "demo-supervisor")
