"""Browser-test fixtures: Playwright driving Debian's headless Chromium.

The browser is Debian's ``chromium`` package; never run ``playwright install``.
Every fixture here is function-scoped on purpose: Playwright's objects belong to the
event loop that created them, and each test (with its ``aiohttp_server``) runs on a
loop of its own, so a browser shared across tests would be used from the wrong loop.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

DEBIAN_CHROMIUM = "/usr/bin/chromium"
# Root in CI has no user namespaces for the sandbox; /dev/shm may be small in containers.
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]
LOCALE = "zh-CN"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
# Playwright's default of 30 s per action makes a broken page slow to report.
ACTION_TIMEOUT_MS = 10_000
# What a page shows after a server-sent event or a fetch: a ceiling, not a wait (expect polls
# and passes as soon as the page shows it); Playwright's 5 s default fails on a loaded machine.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium; a missing one fails loudly instead of skipping."""
    if os.access(DEBIAN_CHROMIUM, os.X_OK):
        return DEBIAN_CHROMIUM
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            f"Chromium not found at {DEBIAN_CHROMIUM} nor on PATH: "
            "install Debian's package with `apt-get install chromium` "
            "(never `playwright install`)",
            pytrace=False,
        )
    return found


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    """A headless Chromium launched on the test's own event loop, closed after it."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=LAUNCH_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh context (zh-CN, 1280x800); the context is closed after the test."""
    context = await browser.new_context(locale=LOCALE, viewport=VIEWPORT)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()
