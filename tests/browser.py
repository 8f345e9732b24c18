"""A real browser for the console's tests: Debian's headless Chromium (`apt-get install -y chromium`, as the
README's install says) driven by Playwright, with the flags that keep it off the network of a machine
without internet (it would otherwise try Google's hosts at every start).

Screenshots go to test-artifacts/screenshots/ (POINTS_LEDGER_TEST_ARTIFACTS to move it): CI keeps them, and
docs/images/console/ holds copies the guides show.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

#: Where Debian's chromium package puts the browser; CHROMIUM_PATH to use another.
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(os.environ.get("POINTS_LEDGER_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
#: The window the screenshots are taken in.
VIEWPORT = {"width": 1280, "height": 900}


class NoBrowserError(RuntimeError):
    """Chromium is not installed where the tests look for it."""


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed afterwards."""
    if shutil.which(CHROMIUM) is None:
        raise NoBrowserError(f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium` (the "
                             "README's install) or set CHROMIUM_PATH")  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> Path:
    """The whole page as test-artifacts/screenshots/NAME.png."""
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
