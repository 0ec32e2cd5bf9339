"""The filter card's objective selector: its choices come from the contract, the chosen
objective goes with the job, a channel that never fires is marked "dead" on its tile, and the
diversity objective shows n images of the first channel."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import requests

from tests.service.job_http import keras_bytes
from tests.service.test_filter_objectives import DEAD, _model
from tests.ui.conftest import open_page
from tests.ui.flows import JOB_TIMEOUT, contract_of, layers_of, wait_ready

DONE = "() => document.getElementById('filters-status').textContent.startsWith('done: ')"


def _upload(api_url: str, tmp_path: Path) -> str:
    response = requests.post(f"{api_url}/v1/models?wait=60", timeout=90,
                             files={"file": ("dead.keras", keras_bytes(_model(), tmp_path))},
                             data={"name": f"ui-dead-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _run(page, objective: str, last: int) -> dict:
    """Channels 0…last of layer ``conv``, a few steps, ``objective``; the job posted."""
    page.select_option("#filters-objective", objective)
    page.fill("#filters-from", "0")
    page.fill("#filters-to", str(last))
    page.fill("#filters-steps", str(random.randrange(3, 9)))  # no earlier run's cache
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/jobs")) as sent:
        page.click("#filters-run")
    page.wait_for_function(DONE, timeout=JOB_TIMEOUT)
    body = sent.value.post_data_buffer.decode(errors="replace")
    return json.loads(body.split('name="options"')[1].split("\r\n\r\n", 1)[1].split("\r\n")[0])


def test_objectives_from_the_contract_dead_tiles_and_diversity(browser, api_url: str,
                                                               page_errors: list[str],
                                                               tmp_path: Path) -> None:
    model = _upload(api_url, tmp_path)
    contract = contract_of(api_url)
    page = open_page(browser, api_url, page_errors)
    try:
        wait_ready(page)
        choices = page.eval_on_selector_all("#filters-objective option",
                                            "os => os.map(o => o.value)")
        assert choices == contract["filter_objectives"]
        assert page.input_value("#filters-objective") == \
            contract["option_defaults"]["filters"]["objective"]
        page.select_option("#model-select", model)
        wait_ready(page, model)
        page.select_option("#layer-select", "conv")

        sent = _run(page, "channel", 7)
        assert sent["objective"] == "channel" and sent["filters"] == list(range(8))
        captions = page.locator("#filters-list figcaption").all_inner_texts()
        assert [c.endswith("· dead") for c in captions] == [f == DEAD for f in range(8)]
        assert page.locator("#filters-list figure.pattern.dead").count() == 1

        sent = _run(page, "diversity", 3)
        assert sent["objective"] == "diversity" and sent["filters"] == [0]
        captions = page.locator("#filters-list figcaption").all_inner_texts()
        n = contract["option_defaults"]["filters"]["n"]
        assert [c.split(" ")[0] for c in captions] == [f"#0.{k}" for k in range(n)]

        # `class` with a spatial layer selected: the job goes to the model's last (flat) layer
        sent = _run(page, "class", 1)
        assert sent["objective"] == "class" and sent["filters"] == [0, 1]
        job = requests.get(f"{api_url}/v1/jobs?limit=1", timeout=10).json()["jobs"][0]
        assert (job["kind"], job["status"]) == ("filters", "succeeded")
        assert job["layer"] == layers_of(api_url, model)[-1]["name"]
        assert page.locator("#filters-list figure").count() == 2
        assert page.inner_text("#filters-error") == ""
        assert page_errors == [], page_errors
    finally:
        page.context.close()
