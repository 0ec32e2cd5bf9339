"""Fixtures for the browser UI tests: a live gunicorn API (real Redis, real Celery worker) and
Debian's Chromium driven by Playwright's sync API.

Screenshots go to ``test-artifacts/ui/`` (gitignored); one per view is copied to ``docs/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import write_shape_images
from tests.pipeline import serve_api, worker_env

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
DOCS = ROOT / "docs"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's Chromium is not installed at /usr/bin/chromium (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


UI_KEY = "ui-test-key"  # the one API key of the keyed server


@pytest.fixture(scope="session")
def keyed_api_url(settings, worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second gunicorn on the session's Redis and worker that requires ``UI_KEY``
    (``CONVSCOPE_API_KEYS``), for the page's calls with an API key."""
    env = {**worker_env(settings), "CONVSCOPE_API_KEYS": UI_KEY}
    with serve_api(env, tmp_path_factory.mktemp("keyed-api") / "api.log") as url:
        yield url


@pytest.fixture()
def page_errors() -> list[str]:
    """JavaScript errors and failed console messages seen by the page."""
    return []


def open_page(browser, url: str, errors: list[str], width: int = 1280,
              height: int = 800, before: Callable[[object], None] | None = None):
    """A new context and page at ``url``; ``before(page)`` runs before it loads (listeners,
    routes)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}")
            if msg.type == "error" else None)
    if before is not None:
        before(page)
    page.goto(url + "/")
    return page


@pytest.fixture()
def page(browser, api_url: str, page_errors: list[str]) -> Iterator[object]:
    page = open_page(browser, api_url, page_errors)
    yield page
    page.context.close()


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    """One generated shapes image (a known shape on a textured background)."""
    return write_shape_images(tmp_path / "images", 1, seed=11)[0]


def screenshot(target, name: str, doc: bool = False, **options) -> Path:
    """Save ``test-artifacts/ui/<name>.png`` of a page or locator (``options`` go to Playwright's
    ``screenshot``); with ``doc`` and ``CONVSCOPE_UPDATE_DOCS=1``, copy it to
    ``docs/ui-<name>.png`` (the README's pictures)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    target.screenshot(path=str(path), **options)
    if doc and os.environ.get("CONVSCOPE_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(path, DOCS / f"ui-{name}.png")
    return path
