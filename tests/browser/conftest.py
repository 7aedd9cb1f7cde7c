"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) for the pages' tests."""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    async_playwright,
    expect,
)

from .standin import StandInGateway

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


# Reports every Content-Security-Policy violation to the console, where the test sees it.
# Playwright runs this before the page's own scripts and outside its policy.
REPORT_CSP_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (event) => {
  const blocked = event.blockedURI || 'inline';
  console.error(`CSP violation: ${event.violatedDirective} blocked ${blocked}`);
});
"""


class PageWatch:
    """What a page did that a test must see: script errors, CSP violations, every URL requested."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.csp_violations: list[str] = []
        self.urls: list[str] = []

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and (
            "Content Security Policy" in message.text or "CSP violation" in message.text
        ):
            self.csp_violations.append(message.text)

    async def attach(self, context: BrowserContext) -> None:
        await context.add_init_script(REPORT_CSP_VIOLATIONS)
        context.on("request", lambda request: self.urls.append(request.url))
        context.on("page", self.watch)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self.on_console)

    def check(self) -> None:
        assert self.errors == [], f"uncaught errors on the page: {self.errors}"
        assert self.csp_violations == [], (
            f"Content-Security-Policy violations: {self.csp_violations}"
        )
        # Tokens travel in headers only: a URL can land in logs, history and referrers.
        leaked = [url for url in self.urls if "access_token=" in url]
        assert leaked == [], f"a token in a URL: {leaked}"


async def new_page(
    browser: Browser, watch: PageWatch, **options: object
) -> tuple[BrowserContext, Page]:
    """A fresh browser profile (English unless `locale` says otherwise) with one page."""
    settings: dict[str, object] = {"viewport": {"width": 1280, "height": 800}, "locale": "en-US"}
    settings.update(options)
    context = await browser.new_context(**settings)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    await watch.attach(context)
    return context, await context.new_page()


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
async def page(browser: Browser, watch: PageWatch) -> AsyncIterator[Page]:
    """A fresh English browser profile per test; an uncaught script error, a CSP violation or
    a token in a requested URL fails the test."""
    context, page = await new_page(browser, watch)
    try:
        yield page
    finally:
        await context.close()
    watch.check()


@pytest.fixture
async def standin() -> AsyncIterator[StandInGateway]:
    server = StandInGateway(STATIC_DIR)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR
