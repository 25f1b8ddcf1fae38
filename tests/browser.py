"""A real browser for the tests: Debian's headless Chromium driven by Playwright (its Python package
ships the driver; no browser is downloaded)."""

import contextlib
import os
import shutil
from pathlib import Path

# Debian's package (scripts/test-prerequisites.sh installs it); on a GitHub runner, the image's Chrome; or the
# browser named by INVADERS_CHROMIUM (the same choice as that script's).
CHROMIUM = (os.environ.get("INVADERS_CHROMIUM")
            or next(filter(None, map(shutil.which, ("chromium", "google-chrome"))), "/usr/bin/chromium"))
# No background connections: this machine reaches no network, and Chromium would log each refusal.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Where the UI tests also save their screenshots (`make ui-screenshots` points it at docs/).
SCREENSHOTS = os.environ.get("INVADERS_SCREENSHOTS")


@contextlib.contextmanager
def chromium_page(out: Path, width: int = 1280, height: int = 800):
    """A fresh page (no cookies or local storage: a new user) in headless Chromium. If the block fails,
    `out/failure.png` shows the page as it was."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # a loaded 2-core machine renders slowly
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            try:
                yield page
            except BaseException:
                page.screenshot(path=out / "failure.png")
                raise
        finally:
            browser.close()


def screenshot(page, out: Path, name: str) -> None:
    """`out/name`, and the same under $INVADERS_SCREENSHOTS if set."""
    for folder in [out, *([Path(SCREENSHOTS)] if SCREENSHOTS else [])]:
        page.screenshot(path=folder / name)
