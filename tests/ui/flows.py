"""Steps and read-backs the browser tests share: the API's own answers (layers, jobs, contract)
and the page's state, waited for by condition."""

from __future__ import annotations

import requests

JOB_TIMEOUT = 180_000  # ms: the first job may queue behind the worker describing models


def layers_of(api_url: str, model: str = "shapes") -> list[dict]:
    response = requests.get(f"{api_url}/v1/models/{model}/layers?wait=30", timeout=60)
    response.raise_for_status()
    return response.json()["layers"]


def contract_of(api_url: str) -> dict:
    response = requests.get(f"{api_url}/v1/contract", timeout=10)
    response.raise_for_status()
    return response.json()


def latest_job(api_url: str, kind: str) -> dict:
    jobs = requests.get(f"{api_url}/v1/jobs?limit=20", timeout=10).json()["jobs"]
    return next(j for j in jobs if j["kind"] == kind and j["status"] == "succeeded")


def number(page, selector: str) -> float:
    return float(page.locator(selector).inner_text().strip())


def numbers(locator) -> list[float]:
    return [float(t) for t in locator.all_inner_texts()]


def wait_image(page, selector: str) -> int:
    """Wait until the <img> has loaded; return its naturalWidth."""
    loaded = "s => (e => e?.complete && e.naturalWidth > 0)(document.querySelector(s))"
    page.wait_for_function(loaded, arg=selector, timeout=JOB_TIMEOUT)
    return page.eval_on_selector(selector, "e => e.naturalWidth")


def wait_ready(page, model: str = "shapes") -> None:
    page.wait_for_selector("#layer-table tbody tr", timeout=90_000)
    assert page.input_value("#model-select") == model


def use_sample(page, name: str = "star") -> None:
    page.click(f"#samples button.sample[title='{name}']")
    page.wait_for_function(
        "n => document.getElementById('image-name').textContent.startsWith(n + '.png')", arg=name)


def show_activations(page, layer: str) -> None:
    """Feature maps of ``layer`` for the chosen image, and its first channel enlarged."""
    page.select_option("#layer-select", layer)
    page.click("#act-run")
    page.wait_for_function(
        "l => document.getElementById('act-status').textContent.startsWith('done: ' + l)",
        arg=layer, timeout=JOB_TIMEOUT)
    page.click("#act-channels .channel >> nth=0")
    page.wait_for_selector("#act-detail:not([hidden])")


def explain_strongest(page) -> None:
    """Explain the strongest unit of the enlarged channel; wait for the explanation."""
    page.evaluate("document.getElementById('explain-result').hidden = true")
    page.click("#act-explain-max")
    page.wait_for_selector("#explain-result:not([hidden])", timeout=JOB_TIMEOUT)


def overflow(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def in_view(page, selector: str) -> bool:
    """Whether the element's top edge lies inside the viewport."""
    return page.eval_on_selector(
        selector, "e => (r => r.top >= 0 && r.top < innerHeight)(e.getBoundingClientRect())")
