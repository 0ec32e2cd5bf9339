"""The layer atlas card in a real headless Chromium, at desktop and phone widths: the grid of
channels (pattern beside top crops) appears once its jobs ended, scrolling asks for the next
page of channels (and only then), a click opens the channel with its examples, and "explain
this unit" submits an explain job on the top image at the unit's filter, y and x.

Screenshots: ``test-artifacts/ui/atlas-*.png``; with ``CONVSCOPE_UPDATE_DOCS=1`` also
``docs/atlas-desktop.png`` and ``docs/atlas-phone.png``."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import requests

from tests.ui.conftest import DOCS, open_page, screenshot
from tests.ui.flows import JOB_TIMEOUT, overflow, wait_ready
from worker.shapes_dataset import write_shapes_dataset

LAYER, PAGE = "conv2", 16
DEEP, CHANNELS = "conv3", 64  # four pages


@pytest.fixture(scope="module")
def dataset(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("atlas-images")
    write_shapes_dataset(folder, 16, seed=21)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    res = requests.post(f"{api_url}/v1/datasets?wait=60", timeout=90,
                        files={"file": ("atlas.zip", buf.getvalue())})
    assert res.status_code == 201, res.text
    return res.json()["id"]


def atlas_offsets(requested: list[str]) -> list[int]:
    return [int(u.split("offset=")[1].split("&")[0]) for u in requested if "/atlas?" in u]


def show_atlas(page, dataset: str, layer: str = LAYER) -> None:
    """The atlas of ``layer`` over ``dataset``: its first tiles on screen, pictures loaded, and
    the grid settled (no page being loaded)."""
    wait_ready(page)
    page.select_option("#layer-select", layer)
    page.click("#atlas-refresh")
    page.wait_for_selector(f"#atlas-dataset option[value='{dataset}']", state="attached")
    page.select_option("#atlas-dataset", dataset)
    page.click("#atlas-run")
    page.wait_for_selector("#atlas-grid .atlas-channel", timeout=JOB_TIMEOUT)
    page.eval_on_selector("#atlas-grid", "e => e.scrollIntoView({block: 'start'})")
    loaded = "e => e.complete && e.naturalWidth > 0"
    page.wait_for_function(f"[...document.querySelectorAll('#atlas-grid .atlas-channel img')]"
                           f".slice(0, 2).every({loaded})", timeout=JOB_TIMEOUT)
    settled(page)


def settled(page) -> int:
    """Wait until no page of channels is being loaded; the number of tiles."""
    page.wait_for_function("document.getElementById('atlas-grid').dataset.loading === 'false'",
                           timeout=JOB_TIMEOUT)
    return page.locator("#atlas-grid .atlas-channel").count()


def save(target, name: str) -> None:
    path = screenshot(target, name)
    if os.environ.get("CONVSCOPE_UPDATE_DOCS") == "1":
        shutil.copy(path, DOCS / f"{name}.png")


def test_atlas_pages_as_you_scroll_and_explains_a_unit(browser, api_url, dataset,
                                                       page_errors) -> None:
    requested: list[str] = []
    page = open_page(browser, api_url, page_errors, width=1280, height=800,
                     before=lambda p: p.on("request", lambda r: requested.append(r.url)))
    try:
        show_atlas(page, dataset, DEEP)
        shown = settled(page)
        assert PAGE <= shown < CHANNELS  # the screen's worth, not every page
        assert set(atlas_offsets(requested)) == set(range(0, shown, PAGE))  # (a page asked
        # for while computed, 202, is asked for again once its jobs ended)
        assert page.get_attribute("#atlas-grid .atlas-channel img", "loading") == "lazy"
        while shown < CHANNELS:  # each scroll to the end asks for the next page
            page.eval_on_selector("#atlas-more", "e => e.scrollIntoView({block: 'end'})")
            page.wait_for_function(f"document.querySelectorAll('#atlas-grid .atlas-channel')"
                                   f".length > {shown}", timeout=JOB_TIMEOUT)
            shown = settled(page)
        assert sorted(set(atlas_offsets(requested))) == [0, 16, 32, 48]
        page.eval_on_selector("#atlas-grid", "e => e.scrollIntoView({block: 'start'})")
        save(page, "atlas-desktop")
        page.click("#atlas-grid .atlas-channel[data-channel='3']")
        page.wait_for_selector("#atlas-dialog[open]")
        assert f"Channel 3 of {DEEP}" in page.inner_text("#atlas-dialog-title")
        assert page.locator("#atlas-tops tbody tr").count() >= 1
        page.wait_for_function("(e => e.complete && e.naturalWidth > 0)"
                               "(document.getElementById('atlas-crops'))")
        top = page.locator("#atlas-tops tbody tr").first.locator("td").all_inner_texts()
        page.click("#atlas-explain")
        page.wait_for_selector("#explain-result:not([hidden])", timeout=JOB_TIMEOUT)
        jobs = requests.get(f"{api_url}/v1/jobs?limit=20", timeout=10).json()["jobs"]
        job = next(j for j in jobs if j["kind"] == "explain")
        y, x = (int(v) for v in top[3].strip("()").split(","))
        assert (job["layer"], job["options"]) == (DEEP, {"filter": 3, "y": y, "x": x})
        assert job["inputs"][0]["filename"] == Path(top[1]).name
    finally:
        page.context.close()
    assert not page_errors


def test_atlas_on_a_phone(browser, api_url, dataset, page_errors) -> None:
    page = open_page(browser, api_url, page_errors, width=390, height=844)
    try:
        show_atlas(page, dataset)
        width, viewport = overflow(page)
        assert width <= viewport  # nothing wider than the screen
        page.locator("#atlas-grid").scroll_into_view_if_needed()
        save(page, "atlas-phone")
        page.click("#atlas-grid .atlas-channel[data-channel='0']")
        page.wait_for_selector("#atlas-dialog[open]")
        box = page.locator("#atlas-dialog").bounding_box()
        assert box and box["width"] <= 390
        screenshot(page, "atlas-phone-channel")
    finally:
        page.context.close()
    assert not page_errors


WIDE, WIDE_PAGE = 512, 64  # a layer of 512 channels, answered 64 at a time


def wide_atlas(page, requests_seen: list[str]) -> None:
    """Answer the page's atlas requests as for a layer of :data:`WIDE` channels (pages of
    :data:`WIDE_PAGE`), each channel's pictures one small PNG; every picture fetch recorded."""
    import json

    import numpy as np

    from models.png import encode

    picture = encode(np.full((8, 8, 3), 128, np.uint8))

    def atlas(route) -> None:
        offset = int(route.request.url.split("offset=")[1].split("&")[0])
        indices = range(offset, min(WIDE, offset + WIDE_PAGE))
        end = indices[-1] + 1
        body = {"model": "shapes", "layer": LAYER, "dataset": "wide", "offset": offset,
                "limit": WIDE_PAGE, "total": WIDE, "next": end if end < WIDE else None,
                "channels": [{"index": i, "pattern": f"/fake-atlas/pattern-{i}.png",
                              "crops": f"/fake-atlas/crops-{i}.png", "top": [],
                              "dead_fraction": 0.0, "activation": 1.0} for i in indices]}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    def pictures(route) -> None:
        requests_seen.append(route.request.url)
        route.fulfill(status=200, content_type="image/png", body=picture)

    page.route("**/atlas?*", atlas)
    page.route("**/fake-atlas/*", pictures)


def test_atlas_of_512_channels_fetches_pictures_only_near_the_screen(browser, api_url, dataset,
                                                                    page_errors) -> None:
    fetched: list[str] = []
    page = open_page(browser, api_url, page_errors, width=1280, height=800,
                     before=lambda p: wide_atlas(p, fetched))
    near = ("[...document.querySelectorAll('#atlas-grid .atlas-channel')].filter("
            "t => t.getBoundingClientRect().top < innerHeight + 400).length")
    try:
        show_atlas(page, dataset)
        assert page.locator("#atlas-grid .atlas-channel").count() == WIDE_PAGE
        page.wait_for_function(f"document.querySelectorAll('#atlas-grid img[src]').length"
                               f" >= 2 * ({near})")
        shown_pictures = page.evaluate("document.querySelectorAll('#atlas-grid img[src]')"
                                       ".length")
        first = len(fetched)  # every picture shown was fetched; some may still be on the way
        # those near the screen (some were near before the grid scrolled into view), not
        # the page's 128
        assert 2 <= shown_pictures <= first <= WIDE_PAGE
        shown = WIDE_PAGE
        while shown < WIDE:  # straight to the end: each jump brings the next page
            page.eval_on_selector("#atlas-more", "e => e.scrollIntoView({block: 'end'})")
            page.wait_for_function(f"document.querySelectorAll('#atlas-grid .atlas-channel')"
                                   f".length > {shown}")
            shown = settled(page)
        assert shown == WIDE
        assert f"{WIDE} of {WIDE} channels" in page.inner_text("#atlas-status")
        page.wait_for_timeout(500)  # let any late picture fetch arrive
        assert len(fetched) < WIDE  # the tiles jumped over never fetched theirs (of 1,024)
        assert len(set(fetched)) == len(fetched)  # nothing fetched twice
        page.eval_on_selector("#atlas-grid .atlas-channel[data-channel='300']",
                              "e => e.scrollIntoView({block: 'center'})")
        page.wait_for_function("document.querySelector(\"#atlas-grid .atlas-channel"
                               "[data-channel='300'] .atlas-pattern\").src !== ''")
        assert any(u.endswith("/pattern-300.png") for u in fetched)
    finally:
        page.context.close()
    assert not page_errors
