"""The agent page against a stand-in card stream whose events and failures the test controls."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from .conftest import PageWatch, new_page
from .standin import (
    EMPLOYEE_TOKEN,
    EXPIRED_TOKEN,
    SERVICE_TOKEN,
    STREAM_PATH,
    StandInGateway,
)

pytestmark = pytest.mark.browser

TOKEN_KEY = "vats-bridge.agent.token"


def stored(page: Page, storage: str) -> Any:
    return page.evaluate(f"{storage}.getItem('{TOKEN_KEY}')")


def make_card(call_id: int = 725, **changes: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "call_id": call_id,
        "ticket_id": 8592,
        "channel_id": 1,
        "channel_name": "+7 495 000-00-00",
        "direction": "incoming",
        "phone": "+74951234567",
        "phone_display": "+7 495 123-45-67",
        "contact_name": "Ivan Smirnov",
        "call_status": "ringing",
        "user_id": None,
        "user_name": "",
        "pbx_call_id": "pbx-1001",
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "audio_record": None,
    }
    card.update(changes)
    return card


def card_locator(page: Page, call_id: int) -> Locator:
    return page.locator(f'#cards [data-call-id="{call_id}"]')


async def sign_in(
    page: Page, standin: StandInGateway, token: str = EMPLOYEE_TOKEN, remember: bool = False
) -> None:
    await page.goto(f"{standin.url}/agent")
    await page.fill("#token-input", token)
    if remember:
        await page.check("#remember-me")
    await page.click("#token-submit")


def card_streams(standin: StandInGateway) -> list[Any]:
    return [r for r in standin.stream_requests if r.path == STREAM_PATH]


async def open_live(page: Page, standin: StandInGateway) -> None:
    """Sign in and wait until the page's stream is open, so pushed events reach it."""
    streams_before = standin.accepted_streams
    await sign_in(page, standin)
    await standin.wait_for_streams(streams_before + 1)
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")


async def test_token_is_asked_once_kept_for_the_session_and_sent_only_in_headers(
    page: Page, standin: StandInGateway
) -> None:
    await page.goto(f"{standin.url}/agent")
    status = page.locator("#connection-status")
    await expect(status).to_have_attribute("data-state", "signed-out")
    await expect(page.locator("#token-input")).to_be_focused()

    await page.fill("#token-input", EMPLOYEE_TOKEN)
    await page.click("#token-submit")
    await expect(status).to_have_attribute("data-state", "live")
    await expect(status).to_have_text("Live")
    await expect(page.locator("#empty-state")).to_contain_text("No active calls")

    await page.reload()
    await expect(status).to_have_attribute("data-state", "live")
    await expect(page.locator("#token-input")).to_be_hidden()
    # Each connection came with a ticket of its own, issued for the token sent in a header.
    streams = card_streams(standin)
    assert [r.token for r in streams] == [EMPLOYEE_TOKEN, EMPLOYEE_TOKEN]
    assert all(r.ticket and r.access_token is None for r in streams)
    assert len({r.ticket for r in streams}) == 2
    assert not any(EMPLOYEE_TOKEN in r.target for r in standin.requests)
    assert await stored(page, "sessionStorage") == EMPLOYEE_TOKEN
    assert await stored(page, "localStorage") is None


async def test_remember_me_keeps_the_token_for_a_new_session_and_sign_out_forgets_it(
    browser: Browser, standin: StandInGateway, watch: PageWatch
) -> None:
    context, page = await new_page(browser, watch)
    try:
        await sign_in(page, standin, remember=True)
        status = page.locator("#connection-status")
        await expect(status).to_have_attribute("data-state", "live")
        assert await stored(page, "localStorage") == EMPLOYEE_TOKEN
        assert await stored(page, "sessionStorage") is None

        # A new tab of the same profile has a session of its own: only a remembered token
        # reaches it.
        other = await context.new_page()
        await other.goto(f"{standin.url}/agent")
        await expect(other.locator("#connection-status")).to_have_attribute("data-state", "live")
        await expect(other.locator("#remember-me")).to_be_checked()

        await page.get_by_role("button", name="Sign out").click()
        await expect(status).to_have_attribute("data-state", "signed-out")
        assert await stored(page, "localStorage") is None
        assert await stored(page, "sessionStorage") is None
        # The other tab follows.
        await expect(other.locator("#connection-status")).to_have_attribute(
            "data-state", "signed-out"
        )
    finally:
        await context.close()
    watch.check()


async def test_a_token_not_remembered_does_not_reach_a_new_tab(
    browser: Browser, standin: StandInGateway, watch: PageWatch
) -> None:
    context, page = await new_page(browser, watch)
    try:
        await sign_in(page, standin)
        await expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")
        other = await context.new_page()
        await other.goto(f"{standin.url}/agent")
        await expect(other.locator("#token-input")).to_be_visible()
        await expect(other.locator("#connection-status")).to_have_attribute(
            "data-state", "signed-out"
        )
    finally:
        await context.close()
    watch.check()


async def test_shown_card_displays_the_call(
    page: Page, standin: StandInGateway, artifacts_dir: Path
) -> None:
    await open_live(page, standin)
    await standin.push("show", make_card(725, user_id=1, user_name="Anna Petrova"))

    card = card_locator(page, 725)
    await expect(card).to_be_visible()
    await expect(card.get_by_test_id("card-phone")).to_have_text("+7 495 123-45-67")
    await expect(card.get_by_test_id("card-phone")).to_have_attribute("href", "tel:+74951234567")
    # The number as the PBX sent it, on hover.
    await expect(card.get_by_test_id("card-phone")).to_have_attribute("title", "+74951234567")
    await expect(card.get_by_test_id("card-status")).to_have_text("Ringing")
    await expect(card.get_by_test_id("card-direction")).to_have_text("Incoming")
    await expect(card.get_by_test_id("card-contact")).to_have_text("Ivan Smirnov")
    await expect(card.get_by_test_id("card-channel")).to_have_text("+7 495 000-00-00")
    await expect(card.get_by_test_id("card-employee")).to_have_text("Anna Petrova")
    await expect(card.get_by_test_id("card-pbx-call-id")).to_have_text("pbx-1001")
    ticket = card.get_by_test_id("card-ticket")
    await expect(ticket).to_have_text("#8592")
    await expect(ticket).to_have_attribute("href", "/api/v2/telephony/history/725")
    await expect(card.get_by_test_id("card-audio")).to_be_hidden()
    await expect(page.locator("#empty-state")).to_be_hidden()
    await expect(page.locator("#call-count")).to_have_text("1")
    await expect(page.locator("#announcer")).to_contain_text("+74951234567")
    await expect(page).to_have_title(re.compile(r"^\(1\) "))

    await standin.push(
        "show",
        make_card(726, phone="+74957654321", phone_display="+7 495 765-43-21", contact_name=""),
    )
    await expect(page.locator("#call-count")).to_have_text("2")
    await page.wait_for_timeout(600)  # let the arrival animation finish before the screenshot
    await page.screenshot(path=str(artifacts_dir / "agent-standin-cards.png"), full_page=True)


async def test_card_with_a_recording_has_an_audio_player(
    page: Page, standin: StandInGateway, artifacts_dir: Path
) -> None:
    await open_live(page, standin)
    url = f"{standin.url}/api/v2/telephony/records/9?sig=abc"
    await standin.push("show", make_card(730, call_status="in-progress", audio_record=url))

    audio = card_locator(page, 730).get_by_test_id("card-audio")
    await expect(audio).to_be_visible()
    await expect(audio).to_have_attribute("src", url)
    await card_locator(page, 730).screenshot(path=str(artifacts_dir / "agent-standin-audio.png"))


async def test_update_changes_the_card_in_place(page: Page, standin: StandInGateway) -> None:
    await open_live(page, standin)
    await standin.push("show", make_card(725))
    card = card_locator(page, 725)
    await expect(card.get_by_test_id("card-status")).to_have_text("Ringing")
    await card.evaluate("el => { el.dataset.marker = 'same-element'; }")

    await standin.push(
        "update", make_card(725, call_status="in-progress", user_id=2, user_name="Boris Ivanov")
    )
    await expect(card.get_by_test_id("card-status")).to_have_text("In progress")
    await expect(card.get_by_test_id("card-employee")).to_have_text("Boris Ivanov")
    await expect(card).to_have_attribute("data-marker", "same-element")
    await expect(page.locator("#cards [data-call-id]")).to_have_count(1)


async def test_hide_fades_the_card_out_and_removes_it(page: Page, standin: StandInGateway) -> None:
    await open_live(page, standin)
    await standin.push("show", make_card(725))
    card = card_locator(page, 725)
    await expect(card).to_be_visible()

    await standin.push("hide", make_card(725, call_status="answered", reason="final"))
    await expect(card).to_have_class(re.compile(r"\bis-leaving\b"))
    await expect(card).to_have_count(0)
    await expect(page.locator("#empty-state")).to_be_visible()
    await expect(page.locator("#call-count")).to_have_text("0")
    await expect(page).to_have_title("Calls · vats-bridge")


async def test_reset_clears_every_card_before_the_snapshot(
    page: Page, standin: StandInGateway
) -> None:
    await open_live(page, standin)
    await standin.push("show", make_card(725))
    await standin.push("show", make_card(726))
    await expect(page.locator("#cards [data-call-id]")).to_have_count(2)

    await standin.push("reset", {"reason": "log_truncated"})
    await standin.push("show", make_card(727))
    await expect(card_locator(page, 727)).to_be_visible()
    await expect(page.locator("#cards [data-call-id]")).to_have_count(1)


async def test_lost_stream_shows_disconnected_and_resumes_from_the_last_event(
    page: Page, standin: StandInGateway, artifacts_dir: Path
) -> None:
    await open_live(page, standin)
    last_seen = await standin.push("show", make_card(725))
    await expect(card_locator(page, 725)).to_be_visible()

    standin.refuse_streams = True
    await standin.drop_streams()
    status = page.locator("#connection-status")
    await expect(status).to_have_attribute("data-state", "reconnecting")
    await expect(status).to_contain_text("Disconnected")
    await expect(page.locator("#stale-note")).to_be_visible()
    await expect(card_locator(page, 725)).to_be_visible()  # kept while reconnecting
    await expect(page.locator("#view-now")).to_have_class(re.compile(r"\bis-stale\b"))
    await page.wait_for_timeout(500)  # the arrival animation, for the screenshot
    await page.screenshot(path=str(artifacts_dir / "agent-standin-disconnected.png"))

    # Missed while disconnected: the page must get it by resuming, not by a fresh start.
    await standin.push("update", make_card(725, call_status="in-progress"))
    refused = len(card_streams(standin))
    standin.refuse_streams = False
    await standin.wait_for_streams(2)
    await expect(status).to_have_attribute("data-state", "live")
    await expect(card_locator(page, 725).get_by_test_id("card-status")).to_have_text("In progress")

    streams = card_streams(standin)
    resumed = streams[-1]
    assert len(streams) > refused
    assert resumed.last_event_id == str(last_seen)
    assert all(r.last_event_id == str(last_seen) for r in streams[1:])
    # Every attempt had a fresh ticket: a spent one is never offered again.
    # (A request without one is the page asking, token in the header, why a connection failed.)
    tickets = [r.ticket for r in streams if r.ticket]
    assert len(tickets) == len(set(tickets)) >= 2
    assert all(r.access_token is None for r in streams)


async def test_unavailable_server_is_retried_not_taken_for_a_rejected_token(
    page: Page, standin: StandInGateway
) -> None:
    standin.refuse_streams = True
    await sign_in(page, standin)
    status = page.locator("#connection-status")
    await expect(status).to_have_attribute("data-state", "reconnecting")
    await expect(page.locator("#empty-state")).to_contain_text("Not connected")
    await expect(page.locator("#token-input")).to_be_hidden()

    standin.refuse_streams = False
    await expect(status).to_have_attribute("data-state", "live")
    await expect(page.locator("#empty-state")).to_contain_text("No active calls")
    assert await stored(page, "sessionStorage") == EMPLOYEE_TOKEN


@pytest.mark.parametrize(("token", "status_code"), [("not-a-token", 401), (SERVICE_TOKEN, 403)])
async def test_refused_token_shows_token_rejected_and_asks_again(
    page: Page, standin: StandInGateway, artifacts_dir: Path, token: str, status_code: int
) -> None:
    await sign_in(page, standin, token=token)
    status = page.locator("#connection-status")
    await expect(status).to_have_attribute("data-state", "rejected")
    await expect(status).to_have_text("Token rejected")
    await expect(page.locator("#token-input")).to_be_visible()
    await expect(page.locator("#token-error")).to_contain_text(f"HTTP {status_code}")
    assert await stored(page, "sessionStorage") is None
    await page.screenshot(path=str(artifacts_dir / f"agent-standin-rejected-{status_code}.png"))
    requests_when_rejected = len(standin.requests)
    await page.wait_for_timeout(2500)
    assert len(standin.requests) == requests_when_rejected  # no reconnect loop
    assert await status.get_attribute("data-state") == "rejected"

    await page.fill("#token-input", EMPLOYEE_TOKEN)
    await page.click("#token-submit")
    await expect(status).to_have_attribute("data-state", "live")


async def test_sign_out_forgets_the_token(page: Page, standin: StandInGateway) -> None:
    await open_live(page, standin)
    await standin.push("show", make_card(725))
    await expect(card_locator(page, 725)).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "signed-out")
    await expect(page.locator("#token-input")).to_be_visible()
    await expect(card_locator(page, 725)).to_have_count(0)
    assert await stored(page, "sessionStorage") is None
    assert await stored(page, "localStorage") is None


async def test_card_text_is_never_interpreted_as_markup(
    page: Page, standin: StandInGateway
) -> None:
    await open_live(page, standin)
    hostile = '<img src=x onerror="window.injected=1">'
    await standin.push(
        "show",
        make_card(725, contact_name=hostile, channel_name="<b>bold</b>", user_name="<i>x</i>"),
    )
    card = card_locator(page, 725)
    await expect(card.get_by_test_id("card-contact")).to_have_text(hostile)
    await expect(card.get_by_test_id("card-channel")).to_have_text("<b>bold</b>")
    await expect(card.locator("img, b, i")).to_have_count(0)
    assert await page.evaluate("window.injected === undefined")


async def test_time_since_the_call_started_counts_up(page: Page, standin: StandInGateway) -> None:
    await open_live(page, standin)
    started = datetime.now(UTC) - timedelta(minutes=61, seconds=5)
    await standin.push("show", make_card(725, created_at=started.isoformat()))
    elapsed = card_locator(page, 725).get_by_test_id("card-elapsed")
    await expect(elapsed).to_have_text(re.compile(r"^1:01:0\d$"))
    first = await elapsed.text_content()
    await expect(elapsed).not_to_have_text(first or "")


async def test_page_fits_a_phone_screen_in_dark_mode(
    browser: Browser, standin: StandInGateway, artifacts_dir: Path, watch: PageWatch
) -> None:
    context, page = await new_page(
        browser,
        watch,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        color_scheme="dark",
    )
    try:
        await open_live(page, standin)
        await standin.push(
            "show",
            make_card(725, user_id=1, user_name="Anna Petrova", contact_name="Ivan Smirnov"),
        )
        await expect(card_locator(page, 725)).to_be_visible()
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        await page.wait_for_timeout(600)
        await page.screenshot(path=str(artifacts_dir / "agent-standin-phone-dark.png"))
    finally:
        await context.close()
    watch.check()


async def test_an_expired_token_is_told_so(page: Page, standin: StandInGateway) -> None:
    await sign_in(page, standin, token=EXPIRED_TOKEN)
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "rejected")
    await expect(page.locator("#token-error")).to_contain_text("The token has expired")
    await expect(page.locator("#token-error")).to_contain_text("HTTP 401")


async def test_a_revoked_token_ends_the_session_when_its_stream_ends(
    page: Page, standin: StandInGateway
) -> None:
    await open_live(page, standin)
    await standin.push("show", make_card(725))
    await expect(card_locator(page, 725)).to_be_visible()

    standin.revoke(EMPLOYEE_TOKEN)
    await standin.drop_streams()
    status = page.locator("#connection-status")
    await expect(status).to_have_attribute("data-state", "rejected")
    await expect(page.locator("#token-error")).to_contain_text("The token was rejected")
    await expect(card_locator(page, 725)).to_have_count(0)
    assert await stored(page, "sessionStorage") is None
