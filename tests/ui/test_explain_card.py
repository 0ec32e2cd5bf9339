"""The explain card read as a newcomer reads it: input channels named by colour where the layer's
input is the image, a note saying what the patch numbers are, the products patch·kernel cell by
cell summing to each channel's Σ, and the window the unit sees outlined on the input image.

Expected values come from the API's own explain result and the layer table, and, for the window
on the image, from the shapes model's layout worked out by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.ui.flows import (
    JOB_TIMEOUT,
    explain_strongest,
    latest_job,
    layers_of,
    number,
    numbers,
    show_activations,
    use_sample,
    wait_image,
    wait_ready,
)


def flat(grid: list[list[float]]) -> list[float]:
    return [v for line in grid for v in line]


def check_products(page, item: dict) -> None:
    """Each visible channel block: products = patch × kernel cell by cell (the API's numbers,
    as displayed to 3 significant digits), and they add up to the channel's Σ shown."""
    blocks = page.locator("#explain-channels .unit:visible")
    assert blocks.count() >= 1
    for k in range(blocks.count()):
        block = blocks.nth(k)
        ch = next(c for c in item["channels"] if str(c["index"]) == block.get_attribute(
            "data-channel"))
        patch = numbers(block.locator("table.patch td"))
        kernel = numbers(block.locator("table.kernel td"))
        products = numbers(block.locator("table.product tbody td"))
        expected = [p * w for p, w in zip(flat(ch["patch"]), flat(ch["kernel"]), strict=True)]
        assert patch == pytest.approx(flat(ch["patch"]), rel=6e-3, abs=1e-6)
        assert kernel == pytest.approx(flat(ch["kernel"]), rel=6e-3, abs=1e-6)
        assert products == pytest.approx(expected, rel=6e-3, abs=1e-6)
        assert block.locator("table.product").is_visible()
        shown = float(block.locator(".product-sum").inner_text())
        assert shown == pytest.approx(ch["sum"], rel=1e-5, abs=1e-6)
        assert float(block.locator(".channel-sum").inner_text()) == pytest.approx(shown)
        rounding = 6e-3 * sum(abs(p) for p in products) + 1e-6
        assert sum(products) == pytest.approx(shown, abs=rounding)


def check_outline(page, rows: tuple[int, int], cols: tuple[int, int],
                  size: tuple[int, int]) -> None:
    """The outline covers image rows/cols (inclusive) of an ``size`` = (H, W) image as drawn."""
    assert page.is_visible("#explain-outline")
    # Both boxes in one go: the page may still be scrolling.
    image, box = page.evaluate("""() => ['explain-image', 'explain-outline'].map(id =>
        (r => ({x: r.x, y: r.y, width: r.width, height: r.height}))(
        document.getElementById(id).getBoundingClientRect()))""")
    (r0, r1), (c0, c1), (h, w) = rows, cols, size
    assert box["y"] - image["y"] == pytest.approx(r0 / h * image["height"], abs=1.0)
    assert box["x"] - image["x"] == pytest.approx(c0 / w * image["width"], abs=1.0)
    assert box["height"] == pytest.approx((r1 - r0 + 1) / h * image["height"], abs=1.0)
    assert box["width"] == pytest.approx((c1 - c0 + 1) / w * image["width"], abs=1.0)


def clip(lo: int, hi: int, n: int) -> tuple[int, int]:
    return max(lo, 0), min(hi, n - 1)


def test_first_conv_layer_reads_the_image(page, api_url: str) -> None:
    """conv1 of shapes (after its Rescaling layer): R/G/B, values 0..1 said to be after the
    preprocessing and Rescaling, products, and the exact 3×3 window outlined on the image."""
    wait_ready(page)
    rows = layers_of(api_url)
    assert [r["type"] for r in rows[:2]] == ["Rescaling", "Conv2D"]
    h, w, _ = rows[0]["output_shape"]
    use_sample(page, "star")
    show_activations(page, "conv1")
    explain_strongest(page)
    item = latest_job(api_url, "explain")["result"]["items"][0]

    names = page.locator("#explain-channels .unit .channel-name").all_text_contents()
    assert names == ["R", "G", "B"]

    note = page.inner_text("#explain-values")
    assert "conv1 receives as input" in note
    assert "preprocessing" in note and "rescaling layer (Rescaling)" in note
    values = [v for ch in item["channels"] for v in flat(ch["patch"])]
    assert number(page, "#explain-min") == pytest.approx(min(values), rel=1e-3, abs=1e-6)
    assert number(page, "#explain-max") == pytest.approx(max(values), rel=1e-3, abs=1e-6)
    assert 0 <= min(values) and max(values) <= 1  # the Rescaling layer's 0..1, not 0..255

    check_products(page, item)

    # conv1 reads the image itself: its window is explain's rows/cols, clipped to the image.
    assert wait_image(page, "#explain-image") > 0
    check_outline(page, clip(item["rows"][0], item["rows"][-1], h),
                  clip(item["cols"][0], item["cols"][-1], w), (h, w))
    assert page.get_attribute("#explain-outline", "data-exact") == "true"


def test_deeper_conv_layer_reads_feature_maps(page, api_url: str) -> None:
    """conv2 (after conv1 3×3 same, pool1 2×2/2): in-channel names, values said to be pool1's
    output, products, and its 8×8 receptive field outlined where the hand derivation puts it."""
    wait_ready(page)
    rows = {r["name"]: r for r in layers_of(api_url)}
    assert rows["conv1"]["kernel_size"] == [3, 3] and rows["conv1"]["padding"] == "same"
    assert rows["pool1"]["kernel_size"] == [2, 2] and rows["pool1"]["strides"] == [2, 2]
    assert rows["conv2"]["receptive_field"] == [8, 8]
    h, w, _ = rows["rescaling"]["output_shape"]
    use_sample(page, "circle")
    show_activations(page, "conv2")
    explain_strongest(page)
    item = latest_job(api_url, "explain")["result"]["items"][0]

    names = page.locator("#explain-channels .unit .channel-name").all_text_contents()
    assert names == [f"in-channel {k}" for k in range(rows["conv1"]["output_shape"][2])]
    assert "the output of pool1 (MaxPooling2D)" in page.inner_text("#explain-values")

    check_products(page, item)

    # pool1 output [a, b] ← its input [2a, 2b + 1] ← conv1 (pad 1) input [2a − 1, 2b + 2].
    def on_image(window: list[int], n: int) -> tuple[int, int]:
        a, b = window[0], window[-1]
        assert 2 * b + 2 - (2 * a - 1) + 1 == 8
        return clip(2 * a - 1, 2 * b + 2, n)

    assert wait_image(page, "#explain-image") > 0
    check_outline(page, on_image(item["rows"], h), on_image(item["cols"], w), (h, w))
    assert page.get_attribute("#explain-outline", "data-exact") == "true"


def upload(api_url: str, path: Path, name: str, preprocess: str) -> str:
    with path.open("rb") as f:
        response = requests.post(f"{api_url}/v1/models?wait=60", files={"file": f},
                                 data={"name": name, "preprocess": preprocess}, timeout=120)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def first_conv_names(page, model_id: str) -> list[str]:
    page.click("#model-refresh")
    page.wait_for_function(
        "id => document.querySelector(`#model-select option[value=\"${id}\"]`)", arg=model_id)
    page.select_option("#model-select", model_id)
    page.wait_for_function(
        "() => document.querySelector('#layer-table tbody tr button[data-layer=\"conv\"]')",
        timeout=JOB_TIMEOUT)
    show_activations(page, "conv")
    explain_strongest(page)
    return page.locator("#explain-channels .unit .channel-name").all_text_contents()


@pytest.mark.filterwarnings("ignore::DeprecationWarning:keras")
def test_greyscale_and_bgr_inputs_are_named_so(page, api_url: str, tmp_path: Path) -> None:
    """A one-channel model's input channel is "grey"; a model fed "caffe" (BGR) names B, G, R."""
    import keras

    def tiny(channels: int) -> Path:
        path = tmp_path / f"tiny{channels}.keras"
        keras.Sequential([
            keras.Input((16, 16, channels)),
            keras.layers.Conv2D(2, 3, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ]).save(path)
        return path

    grey = upload(api_url, tiny(1), "grey explain", "raw")
    bgr = upload(api_url, tiny(3), "bgr explain", "caffe")
    wait_ready(page)
    use_sample(page, "square")
    assert first_conv_names(page, grey) == ["grey"]
    note = page.inner_text("#explain-values")
    assert "conv receives as input" in note and "“raw”" in note
    assert first_conv_names(page, bgr) == ["B", "G", "R"]
    assert "“caffe”" in page.inner_text("#explain-values")
