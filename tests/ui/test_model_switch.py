"""Switching models: every per-model result (feature maps, explanation, Grad-CAM, filter
patterns, their statuses) goes at once, before the next model's layer table arrives; a model
with random weights says so."""

from __future__ import annotations

import requests

from tests.ui.flows import (
    JOB_TIMEOUT,
    explain_strongest,
    show_activations,
    use_sample,
    wait_ready,
)

NOTICE = "random weights: the maps show the architecture, not learned features"

CLEARED = """() => ['act-result', 'explain-result', 'cam-result', 'filters-result']
    .every(id => document.getElementById(id).hidden)"""


def test_switching_models_clears_the_previous_models_results(page) -> None:
    wait_ready(page)
    use_sample(page, "circle")
    show_activations(page, "conv2")
    explain_strongest(page)
    assert page.inner_text("#explain-status").startswith("done")

    held = []  # the next model's layer table, held back until the cleared page is checked
    page.route("**/v1/models/cifar10/layers*", lambda route: held.append(route))
    with page.expect_request("**/v1/models/cifar10/layers*"):
        page.select_option("#model-select", "cifar10")
    page.wait_for_function(CLEARED)
    for status in ("act-status", "explain-status", "cam-status", "filters-status"):
        assert page.inner_text(f"#{status}") == "", status
    assert page.locator("#explain-channels .unit").count() == 0
    assert page.locator("#layer-table tbody tr").count() == 0
    page.click("#explain-run")  # no model yet: the card says so instead of using the old one
    assert "model" in page.inner_text("#explain-error").lower()

    assert len(held) == 1
    held[0].continue_()
    page.unroute("**/v1/models/cifar10/layers*")
    page.wait_for_function(
        "() => document.querySelector('#layer-table tbody button[data-layer=\"conv4\"]')")
    assert "32×32×3" in page.inner_text("#model-info")
    page.wait_for_function(CLEARED)
    assert page.inner_text("#explain-status") == ""
    assert page.inner_text("#explain-error") == ""


def test_a_model_with_random_weights_says_so(page, api_url: str) -> None:
    record = requests.get(f"{api_url}/v1/models/cifar10", timeout=10).json()
    assert record.get("random_weights") is True, (
        f"the backend does not mark the untrained cifar10 model yet: {record}")
    shapes = requests.get(f"{api_url}/v1/models/shapes", timeout=10).json()
    assert not shapes.get("random_weights")
    wait_ready(page)
    assert not page.is_visible("#model-notice")
    page.select_option("#model-select", "cifar10")
    page.wait_for_selector("#model-notice:visible")
    assert NOTICE in page.inner_text("#model-notice").lower()
    assert "random weights" in page.inner_text("#model-select option[value='cifar10']")
    page.wait_for_function(
        "() => document.querySelector('#layer-table tbody button[data-layer=\"conv4\"]')",
        timeout=JOB_TIMEOUT)
    assert page.is_visible("#model-notice")  # still there once the model has loaded
    page.select_option("#model-select", "shapes")
    page.wait_for_selector("#model-notice", state="hidden")
