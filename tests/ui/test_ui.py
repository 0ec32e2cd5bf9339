"""The browser UI, driven in Debian's Chromium against a live API and a real worker.

What the page shows is read back from the DOM and checked against the API's own answers:
layer table and conv arithmetic, feature maps (grid PNG, per-channel canvases from the NPY),
Grad-CAM (predictions, class re-run, overlay), filter patterns (progress to 100 %, cancel),
a unit explanation whose total equals the activation shown, errors next to their controls,
and no horizontal overflow at phone width.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import requests

from tests.ui.conftest import open_page, screenshot
from tests.ui.flows import (
    JOB_TIMEOUT,
    latest_job,
    layers_of,
    number,
    overflow,
    wait_image,
    wait_ready,
)


def expected_arithmetic(row: dict, n: int, c_in: int) -> tuple[str, str]:
    """The filled formulas for a square Conv2D, computed here from the row's fields."""
    f, s = row["kernel_size"][0], row["strides"][0]
    before = after = 0
    if row["padding"] == "same":
        total = max((math.ceil(n / s) - 1) * s + f - n, 0)
        before, after = total // 2, total - total // 2
    exact = (n + before + after - f) / s + 1
    pad = f"2·{before}" if before == after else f"{before} + {after}"
    value = str(int(exact)) if exact.is_integer() else f"{exact:.4f}".rstrip("0")
    size = f"({n} + {pad} − {f})/{s} + 1 = {value}"
    params = f"({f}·{f}·{c_in} + 1)·{row['filters']} = {(f * f * c_in + 1) * row['filters']}"
    return size, params


def check_layers(page, api_url: str) -> tuple[list[dict], dict]:
    rows = layers_of(api_url)
    assert page.locator("#layer-table tbody tr").count() == len(rows)
    convs = [r for r in rows if r["type"] == "Conv2D"]
    first = convs[0]
    page.select_option("#layer-select", first["name"])
    model = requests.get(f"{api_url}/v1/models/shapes", timeout=10).json()
    size, params = expected_arithmetic(first, model["input_shape"][0], model["input_shape"][2])
    box = page.locator("#arithmetic")
    assert size in box.inner_text()
    assert params in box.inner_text()
    assert (first["arithmetic"] or {}).get("output_size", "") in box.inner_text()
    row = page.locator("#layer-table tbody tr.selected")
    assert first["name"] in row.inner_text()
    assert f"{first['params']:,}" in row.inner_text()
    assert "×".join(map(str, first["output_shape"])) in row.inner_text()
    return rows, convs[1] if len(convs) > 1 else first


def run_activations(page, api_url: str, layer: dict) -> int:
    """Feature maps of ``layer``; returns the channel with the strongest response."""
    page.select_option("#layer-select", layer["name"])
    page.click("#act-run")
    page.wait_for_selector("#act-result:not([hidden])", timeout=JOB_TIMEOUT)
    h, w, c = layer["output_shape"]
    # Each channel is drawn once (the API's tiled grid is a download, not a second copy).
    assert page.locator("#act-channels canvas").count() == c
    assert page.locator("#activations-card img:visible").count() == 0
    labels = page.locator("#act-result .channel span").all_inner_texts()
    assert sorted(labels, key=int) == [str(i) for i in range(c)]
    grid = page.get_attribute("#act-grid-link", "href")
    png = page.evaluate("async u => [...new Uint8Array(await (await fetch(u)).arrayBuffer())"
                        ".slice(1, 4)].map(b => String.fromCharCode(b)).join('')", grid)
    assert png == "PNG"
    assert page.eval_on_selector("#act-channels canvas", "e => [e.width, e.height]") == [w, h]
    assert page.locator("#act-predictions li").count() >= 1
    stats = latest_job(api_url, "activations")["result"]["items"][0]["channels"]
    best = max(stats, key=lambda s: s["max"])
    page.click(f"#act-channels .channel[data-channel='{best['index']}']")
    page.wait_for_selector("#act-detail:not([hidden])")
    assert number(page, "#act-mean") == pytest.approx(best["mean"], rel=1e-3, abs=1e-6)
    assert number(page, "#act-max") == pytest.approx(best["max"], rel=1e-3, abs=1e-6)
    return best["index"]


def explanation(page) -> dict[str, float]:
    page.wait_for_selector("#explain-result:not([hidden])", timeout=JOB_TIMEOUT)
    names = ("sum", "bias", "total", "activation", "model", "map-value")
    return {n: number(page, f"#explain-{n}") for n in names}


ACTIVATIONS = {"relu": lambda v: max(v, 0.0), "linear": lambda v: v, None: lambda v: v}


def run_explain(page, layer: dict, layer_in_channels: int) -> None:
    activation = ACTIVATIONS[layer["activation"]]
    # A mouse click on the enlarged map explains the unit under the pointer.
    box = page.locator("#act-zoom").bounding_box()
    size = page.eval_on_selector("#act-zoom", "e => [e.height, e.width]")
    page.click("#act-zoom", position={"x": box["width"] * 0.3, "y": box["height"] * 0.6})
    shown = explanation(page)
    assert page.input_value("#explain-y") == str(math.floor(0.6 * size[0]))
    assert page.input_value("#explain-x") == str(math.floor(0.3 * size[1]))
    assert shown["total"] == pytest.approx(shown["sum"] + shown["bias"], rel=1e-4, abs=1e-6)
    assert shown["activation"] == pytest.approx(activation(shown["total"]), rel=1e-4, abs=1e-6)
    assert shown["map-value"] == pytest.approx(shown["activation"], rel=1e-3, abs=1e-5)
    # The strongest unit of the strongest channel: positive, so even a ReLU passes the total.
    page.evaluate("document.getElementById('explain-result').hidden = true")
    page.click("#act-explain-max")
    shown = explanation(page)
    assert shown["activation"] > 0
    assert shown["total"] == pytest.approx(shown["activation"], rel=1e-4, abs=1e-6)
    assert shown["total"] == pytest.approx(shown["sum"] + shown["bias"], rel=1e-4, abs=1e-6)
    assert shown["model"] == pytest.approx(shown["activation"], rel=1e-3, abs=1e-5)
    assert shown["map-value"] == pytest.approx(shown["activation"], rel=1e-3, abs=1e-5)
    blocks = page.locator("#explain-channels .unit")
    assert blocks.count() == layer_in_channels
    sums = [float(s) for s in page.locator("#explain-channels .channel-sum").all_text_contents()]
    assert sum(sums) == pytest.approx(shown["sum"], rel=1e-3, abs=1e-4)


def run_gradcam(page) -> None:
    page.select_option("#cam-method", "gradcam")
    page.click("#cam-run")
    page.wait_for_selector("#cam-result:not([hidden])", timeout=JOB_TIMEOUT)
    buttons = page.locator("#cam-predictions button")
    assert buttons.count() >= 2
    top = buttons.nth(0).get_attribute("data-index")
    assert page.get_attribute("#cam-summary", "data-class-index") == top
    assert wait_image(page, "#cam-heatmap") > 0
    assert wait_image(page, "#cam-original") > 0
    # Another class: the page re-runs Grad-CAM for it.
    other = buttons.nth(1).get_attribute("data-index")
    buttons.nth(1).click()
    page.wait_for_function(
        "i => document.getElementById('cam-summary').dataset.classIndex === i", arg=other,
        timeout=JOB_TIMEOUT)
    assert wait_image(page, "#cam-heatmap") > 0
    # The opacity slider is keyboard-operable and drives the heatmap's opacity.
    page.focus("#cam-opacity")
    before = float(page.eval_on_selector("#cam-heatmap", "e => e.style.opacity"))
    page.keyboard.press("ArrowRight")
    after = float(page.eval_on_selector("#cam-heatmap", "e => e.style.opacity"))
    assert after == pytest.approx(before + 0.01)
    # Another method.
    page.select_option("#cam-method", "layercam")
    page.click("#cam-run")
    page.wait_for_function(
        "() => document.getElementById('cam-summary').textContent.startsWith('layercam')",
        timeout=JOB_TIMEOUT)
    assert wait_image(page, "#cam-heatmap") > 0


def run_filters(page, api_url: str) -> None:
    page.fill("#filters-from", "0")
    page.fill("#filters-to", "3")
    page.fill("#filters-steps", "16")
    page.click("#filters-run")
    page.wait_for_function(
        "() => document.getElementById('filters-progress').value === 100", timeout=JOB_TIMEOUT)
    assert page.inner_text("#filters-percent") == "100%"
    page.wait_for_selector("#filters-result:not([hidden])", timeout=JOB_TIMEOUT)
    assert page.locator("#filters-list figure").count() == 4
    assert latest_job(api_url, "filters")["progress"] == pytest.approx(1.0)
    for i in range(4):
        assert wait_image(page, f"#filters-list figure:nth-child({i + 1}) img") > 0


def cancel_filters(page, api_url: str) -> None:
    page.fill("#filters-from", "0")
    page.fill("#filters-to", "15")
    page.fill("#filters-steps", "200")
    page.click("#filters-run")
    page.wait_for_function(
        "() => /running|queued/.test(document.getElementById('filters-status').textContent)",
        timeout=JOB_TIMEOUT)
    assert page.is_enabled("#filters-cancel")
    page.click("#filters-cancel")
    page.wait_for_function(
        "() => document.getElementById('filters-status').textContent === 'canceled'",
        timeout=60_000)
    assert page.is_disabled("#filters-cancel")
    assert page.is_enabled("#filters-run")
    jobs = requests.get(f"{api_url}/v1/jobs?limit=5", timeout=10).json()["jobs"]
    assert jobs[0]["kind"] == "filters" and jobs[0]["status"] == "canceled"


def test_layers_and_the_four_analyses(page, api_url: str, image: Path,
                                      page_errors: list[str]) -> None:
    wait_ready(page)
    rows, layer = check_layers(page, api_url)
    screenshot(page.locator("#layers-card"), "layers", doc=True)

    page.set_input_files("#image-file", str(image))
    assert wait_image(page, "#image-preview") > 0

    run_activations(page, api_url, layer)
    screenshot(page.locator("#activations-card"), "activations", doc=True)

    index = rows.index(layer)
    c_in = rows[index - 1]["output_shape"][-1]
    run_explain(page, layer, c_in)
    screenshot(page.locator("#explain-card"), "explain", doc=True)

    run_gradcam(page)
    screenshot(page.locator("#gradcam-card"), "gradcam", doc=True)

    run_filters(page, api_url)
    screenshot(page.locator("#filters-card"), "filters", doc=True)
    cancel_filters(page, api_url)

    screenshot(page, "desktop-full", full_page=True)
    assert page_errors == [], page_errors


def test_bad_uploads_show_their_error_next_to_the_control(page, tmp_path: Path,
                                                          image: Path) -> None:
    wait_ready(page)
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image\n")
    page.set_input_files("#image-file", str(text))
    page.click("#act-run")
    error = page.locator("#image-card #image-error")
    page.wait_for_function(
        "() => /invalid image/i.test(document.getElementById('image-error').textContent)",
        timeout=JOB_TIMEOUT)
    assert "invalid_image" in error.inner_text()
    assert "image picker" in page.inner_text("#act-error")

    # A good image afterwards clears the message.
    page.set_input_files("#image-file", str(image))
    assert page.inner_text("#image-error") == ""

    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"PK\x03\x04 definitely not a keras archive" * 10)
    page.click("#model-upload-box summary")
    page.set_input_files("#model-file", str(garbage))
    page.click("#model-upload")
    page.wait_for_function(
        "() => document.getElementById('model-upload-error').textContent.length > 0",
        timeout=90_000)
    message = page.locator("#model-upload-form #model-upload-error").inner_text()
    assert re.search(r"invalid|refused|unsafe", message, re.I), message
    assert page.inner_text("#model-upload-status") == ""
    screenshot(page, "errors")


def test_an_image_by_drag_and_drop_or_by_sample(page) -> None:
    wait_ready(page)
    page.evaluate("""async () => {
        const blob = await (await fetch("/ui/samples/square.png")).blob();
        const data = new DataTransfer();
        data.items.add(new File([blob], "dropped.png", {type: "image/png"}));
        const zone = document.getElementById("drop-zone");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
    }""")
    assert wait_image(page, "#image-preview") > 0
    assert "dropped.png" in page.inner_text("#image-name")
    samples = page.locator("#samples button.sample")
    assert samples.count() == 4
    page.click("#samples button.sample[title='star']")
    page.wait_for_function(
        "() => document.getElementById('image-name').textContent.startsWith('star.png')")
    assert wait_image(page, "#image-preview") > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning:keras")
def test_a_valid_keras_upload_is_validated_and_listed(page, tmp_path: Path) -> None:
    import keras

    path = tmp_path / "tiny_upload.keras"
    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    model.save(path)
    wait_ready(page)
    page.click("#model-upload-box summary")
    page.set_input_files("#model-file", str(path))
    page.fill("#model-name", "tiny upload")
    page.click("#model-upload")
    page.wait_for_function(
        "() => /Validated/.test(document.getElementById('model-upload-status').textContent)",
        timeout=120_000)
    assert page.inner_text("#model-upload-error") == ""
    page.wait_for_function(
        "() => document.getElementById('model-select').value.startsWith('m')", timeout=30_000)
    assert "tiny upload" in page.locator("#model-select optgroup[label='Uploaded']").inner_text()
    page.wait_for_function(
        "() => document.querySelector('#layer-table tbody tr button[data-layer=\"conv\"]')",
        timeout=60_000)
    assert "(16 + 2·0 − 3)/1 + 1 = 14" in page.inner_text("#arithmetic")
    assert "(3·3·3 + 1)·4 = 112" in page.inner_text("#arithmetic")


def test_api_key_is_stored_and_sent(page) -> None:
    wait_ready(page)
    page.click("#settings summary")
    page.fill("#api-key", "secret-key")
    with page.expect_request(lambda r: r.url.endswith("/v1/models")) as request:
        page.click("#key-form button")
    assert request.value.headers.get("authorization") == "Bearer secret-key"
    assert page.evaluate("localStorage.getItem('convscope.apiKey')") == "secret-key"


def test_phone_width_does_not_overflow(browser, api_url: str, image: Path,
                                       page_errors: list[str]) -> None:
    page = open_page(browser, api_url, page_errors, width=390, height=844)
    try:
        wait_ready(page)
        assert overflow(page)[0] <= overflow(page)[1] + 1, overflow(page)
        rows = layers_of(api_url)
        layer = [r for r in rows if r["type"] == "Conv2D"][-1]
        page.set_input_files("#image-file", str(image))
        page.select_option("#layer-select", layer["name"])
        page.click("#act-run")
        page.wait_for_selector("#act-result:not([hidden])", timeout=JOB_TIMEOUT)
        page.click("#act-channels .channel >> nth=0")
        page.click("#act-explain-max")
        page.wait_for_selector("#explain-result:not([hidden])", timeout=JOB_TIMEOUT)
        page.click("#cam-run")
        page.wait_for_selector("#cam-result:not([hidden])", timeout=JOB_TIMEOUT)
        wait_image(page, "#cam-heatmap")
        scroll, width = overflow(page)
        assert scroll <= width + 1, f"page is {scroll}px wide in a {width}px window"
        screenshot(page, "phone-full", full_page=True)
        assert page_errors == [], page_errors
    finally:
        page.context.close()


def test_api_docs_render_without_internet(browser, api_url: str) -> None:
    """/docs draws Swagger UI from this server's files; requests elsewhere are refused."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    outside: list[str] = []

    def only_local(route) -> None:
        if route.request.url.startswith(api_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        page = context.new_page()
        page.route("**/*", only_local)
        page.goto(api_url + "/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=60_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any(p.replace("\u200b", "") == "/v1/jobs" for p in paths), paths
        assert "convscope API" in page.locator(".info .title").inner_text()
        screenshot(page, "api-docs")
        assert outside == []
    finally:
        context.close()
