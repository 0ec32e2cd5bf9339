"""The page copies no contract names by hand: it loads GET /v1/contract once at start-up and
builds the CAM method and preprocess choices, the filter defaults and limits, and its
"has this job ended?" check from it. A contract changed on the wire changes the page."""

from __future__ import annotations

import json

import requests

from tests.ui.conftest import open_page
from tests.ui.flows import JOB_TIMEOUT, contract_of, wait_ready


def options(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{selector} option", "os => os.map(o => o.value)")


def test_choices_and_defaults_come_from_the_contract(browser, api_url: str,
                                                     page_errors: list[str]) -> None:
    contract = contract_of(api_url)
    fetched: list[str] = []

    def count(page) -> None:
        page.on("request", lambda r: fetched.append(r.url) if "/v1/contract" in r.url else None)

    page = open_page(browser, api_url, page_errors, before=count)
    try:
        wait_ready(page)
        assert options(page, "#cam-method") == contract["cam_methods"]
        assert page.input_value("#cam-method") == contract["option_defaults"]["gradcam"]["method"]
        assert [m for m in options(page, "#model-preprocess") if m] == contract["preprocess_modes"]
        steps = page.locator("#filters-steps")
        assert steps.input_value() == str(contract["option_defaults"]["filters"]["steps"])
        assert steps.get_attribute("max") == str(contract["max_filter_steps"])
        assert page.input_value("#filters-to") == str(contract["default_filter_count"] - 1)
        # Saving an API key reloads the models, not the contract: it is loaded once.
        page.click("#settings summary")
        with page.expect_response(lambda r: r.url.endswith("/v1/models")):
            page.click("#key-form button")
        assert len(fetched) == 1, fetched
        assert page_errors == [], page_errors
    finally:
        page.context.close()


def test_a_changed_contract_changes_the_page(browser, api_url: str,
                                             page_errors: list[str]) -> None:
    """A made-up method and defaults appear as given; with "running" declared terminal the page
    stops waiting for a filters job as soon as it runs."""
    changed = contract_of(api_url)
    changed["cam_methods"] = [*changed["cam_methods"], "madeupcam"]
    changed["option_defaults"]["filters"]["steps"] = 33
    changed["terminal"] = [*changed["terminal"], "running"]

    def serve_changed(page) -> None:
        page.route("**/v1/contract", lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(changed)))

    page = open_page(browser, api_url, page_errors, before=serve_changed)
    try:
        wait_ready(page)
        assert "madeupcam" in options(page, "#cam-method")
        assert page.input_value("#filters-steps") == "33"
        page.fill("#filters-from", "0")
        page.fill("#filters-to", "15")
        page.click("#filters-run")
        page.wait_for_function(
            """() => document.getElementById('filters-status').textContent === 'running'
                && !document.getElementById('filters-run').disabled""", timeout=JOB_TIMEOUT)
        assert page.inner_text("#filters-error") == ""
        job = requests.get(f"{api_url}/v1/jobs?limit=5", timeout=10).json()["jobs"][0]
        assert job["kind"] == "filters"
        # The page stopped waiting; the job itself went on.
        assert job["status"] in ("running", "succeeded")
        requests.delete(f"{api_url}/v1/jobs/{job['id']}", timeout=10)
    finally:
        page.context.close()
