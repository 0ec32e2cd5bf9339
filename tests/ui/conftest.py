"""Fixtures for the browser UI tests: a live gunicorn API (real Redis, real Celery worker) and
Debian's Chromium driven by Playwright's sync API.

Screenshots go to ``test-artifacts/ui/`` (gitignored); one per view is copied to ``docs/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import tests.conftest as root_conftest
from service.launcher import api_command, free_port
from tests.cli.conftest import wait_for_line
from tests.service.conftest import stop_process_group, worker_env

if "tests.service.conftest" not in getattr(root_conftest, "pytest_plugins", ()):
    from tests.service.conftest import redis_url, settings, worker  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
DOCS = ROOT / "docs"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def api_url(settings, worker) -> Iterator[str]:  # noqa: ANN001
    """gunicorn serving the API (and the UI at ``/``) against the test Redis and worker."""
    port = free_port()
    proc = subprocess.Popen(api_command("127.0.0.1", port, workers=1), env=worker_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for_line(proc, "Booting worker", timeout=60)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=10).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        yield url
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page_errors() -> list[str]:
    """JavaScript errors and failed console messages seen by the page."""
    return []


def open_page(browser, url: str, errors: list[str], width: int = 1280,  # noqa: ANN001, ANN201
              height: int = 800):
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}")
            if msg.type == "error" else None)
    page.goto(url + "/")
    return page


@pytest.fixture()
def page(browser, api_url: str, page_errors: list[str]) -> Iterator[object]:  # noqa: ANN001
    page = open_page(browser, api_url, page_errors)
    yield page
    page.context.close()


def screenshot(target, name: str, doc: bool = False, **options) -> Path:  # noqa: ANN001, ANN003
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
