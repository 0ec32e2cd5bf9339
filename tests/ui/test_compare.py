"""The Compare card in Chromium: every method of the contract on the sample star for one class,
each figure's overlay loaded, its numbers the ones its job gave, the best AUCs marked, and no
sideways scrolling at phone width."""

from __future__ import annotations

import requests

from tests.pipeline import WORKER_CONCURRENCY
from tests.ui.conftest import screenshot
from tests.ui.flows import JOB_TIMEOUT, contract_of, overflow, use_sample, wait_ready


def shown(value: float) -> str:
    """A number as the page shows it (dom.js ``num`` with 3 significant digits)."""
    return "0" if value == 0 else str(float(f"{value:.3g}")).removesuffix(".0")


def test_compare_shows_every_method_with_its_job_numbers(page, api_url: str,
                                                         page_errors: list[str]) -> None:
    contract = contract_of(api_url)
    methods = contract["cam_methods"] + contract["saliency_methods"]
    wait_ready(page)
    use_sample(page, "star")
    classes = page.locator("#compare-class option").all_inner_texts()
    assert classes[0] == "top prediction" and len(classes) > 2
    page.select_option("#compare-class", "1")
    page.click("#compare-run")
    page.wait_for_function(
        "() => document.getElementById('compare-status').textContent === 'done'",
        timeout=4 * JOB_TIMEOUT)
    figures = page.locator("#compare-grid figure")
    assert [figures.nth(i).get_attribute("data-method") for i in range(figures.count())] \
        == methods
    loaded = page.eval_on_selector_all("#compare-grid img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(loaded) == len(methods) and min(loaded) > 0

    jobs = requests.get(f"{api_url}/v1/jobs?limit=100", timeout=10).json()["jobs"]
    mine = {j["options"]["method"]: j for j in jobs[:len(methods)]
            if j["kind"] in ("gradcam", "saliency")}
    assert set(mine) == set(methods)
    rows = page.locator("#compare-table tbody tr")
    assert rows.count() == len(methods)
    deletion = {}
    times = []
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        times.append(cells[1])
        method = rows.nth(i).locator("th").inner_text()
        item = mine[method]["result"]["items"][0]
        assert item["class_index"] == 1 and mine[method]["options"]["class_index"] == 1
        quality = item["quality"]
        assert cells[0] == mine[method]["kind"]
        assert cells[1] == f"{int(item['seconds'] * 1000 + 0.5)}{'*' if item['traced'] else ''}"
        assert cells[2] == shown(quality["deletion_auc"]), (method, cells)
        assert cells[3] == shown(quality["insertion_auc"]), (method, cells)
        assert cells[4] == shown(quality["random_deletion_auc"]), (method, cells)
        deletion[method] = quality["deletion_auc"]
    best = page.locator("#compare-table tbody tr:has(td.best)")
    assert best.count() >= 1
    lowest = min(deletion, key=deletion.get)
    assert page.locator(f"#compare-table tbody tr:has(th:text-is('{lowest}')) td").nth(2) \
        .get_attribute("class") == "num best"

    # again: a method is traced at most once per worker process (the session's worker has
    # WORKER_CONCURRENCY), so over both runs at most that many of its times carry the mark
    page.evaluate("document.getElementById('compare-status').textContent = ''")
    page.click("#compare-run")
    page.wait_for_function(
        "() => document.getElementById('compare-status').textContent === 'done'",
        timeout=4 * JOB_TIMEOUT)
    again = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
    assert len(again) == len(methods) and all(t.rstrip("*").isdigit() for t in again), again
    for first, second in zip(times, again, strict=True):
        assert first.endswith("*") + second.endswith("*") <= WORKER_CONCURRENCY
    screenshot(page.locator("#compare-card"), "compare", doc=True)

    page.set_viewport_size({"width": 390, "height": 844})
    scroll, width = overflow(page)
    assert scroll <= width + 1, f"page is {scroll}px wide in a {width}px window"
    screenshot(page.locator("#compare-card"), "compare-phone")
    assert page_errors == [], page_errors
