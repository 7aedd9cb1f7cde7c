"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) for the agent page tests."""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from .standin import EMPLOYEE_TOKEN, SERVICE_TOKEN, StandInGateway

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO_ROOT / "gateway" / "static"
ARTIFACTS_DIR = REPO_ROOT / "artifacts"


def _unavailable(reason: str) -> None:
    # CI must run these tests: a missing browser there is a broken machine, not a reason to skip.
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so browser tests may not be skipped)")
    pytest.skip(reason)


@pytest.fixture
def chromium_executable() -> Path:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_executable: Path) -> AsyncIterator[Browser]:
    expect.set_options(timeout=10_000)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium_executable), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser profile per test; an uncaught script error fails the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert errors == [], f"uncaught errors on the page: {errors}"


@pytest.fixture
async def standin() -> AsyncIterator[StandInGateway]:
    server = StandInGateway(STATIC_DIR, {EMPLOYEE_TOKEN}, {SERVICE_TOKEN: 403})
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR
