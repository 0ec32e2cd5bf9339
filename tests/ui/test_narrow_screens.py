"""On a phone (390 px): the layer table says it scrolls sideways (a hint and an edge shadow that
follow the scroll position), and an explanation scrolls into view when it appears far below the
tapped unit. On a wide screen the table fits and shows no cue."""

from __future__ import annotations

from tests.ui.conftest import open_page, screenshot
from tests.ui.flows import (
    JOB_TIMEOUT,
    in_view,
    overflow,
    show_activations,
    use_sample,
    wait_ready,
)

EDGE = ("e => ['::before', '::after'].map("
        "side => getComputedStyle(e, side).opacity).join(' ')")


def cue(page) -> str:
    """The opacities of the left and right edge shadows, e.g. "0 1"."""
    return page.eval_on_selector("#layer-frame", EDGE)


def test_phone_layer_table_cue_and_explanation_in_view(browser, api_url: str,
                                                        page_errors: list[str]) -> None:
    page = open_page(browser, api_url, page_errors, width=390, height=844)
    try:
        wait_ready(page)
        scroller = page.locator("#layer-scroll")
        assert scroller.evaluate("e => e.scrollWidth > e.clientWidth")
        assert page.is_visible("#layers-scroll-hint")
        assert "sideways" in page.inner_text("#layers-scroll-hint")
        assert cue(page) == "0 1"  # more columns to the right only
        scroller.evaluate("e => { e.scrollLeft = e.scrollWidth; }")
        page.wait_for_function(
            f"() => ({EDGE})(document.getElementById('layer-frame')) === '1 0'")
        # The layer names stay visible while the table scrolls.
        name = page.locator("#layer-table tbody tr:first-child td:first-child").bounding_box()
        frame = page.locator("#layer-frame").bounding_box()
        assert frame["x"] <= name["x"] < frame["x"] + 4
        screenshot(page.locator("#layers-card"), "phone-layers")

        use_sample(page, "triangle")
        show_activations(page, "conv2")
        page.click("#act-explain-max")
        page.wait_for_selector("#explain-result:not([hidden])", timeout=JOB_TIMEOUT)
        page.wait_for_function(
            "() => (r => r.top >= 0 && r.bottom <= innerHeight)("
            "document.getElementById('explain-summary').getBoundingClientRect())",
            timeout=15_000)
        assert in_view(page, "#explain-result")
        scroll, width = overflow(page)
        assert scroll <= width + 1, f"page is {scroll}px wide in a {width}px window"
        screenshot(page, "phone-explain")
        assert page_errors == [], page_errors
    finally:
        page.context.close()


def test_wide_screen_layer_table_has_no_scroll_cue(page) -> None:
    wait_ready(page)
    assert page.locator("#layer-scroll").evaluate("e => e.scrollWidth <= e.clientWidth")
    assert not page.is_visible("#layers-scroll-hint")
    assert cue(page) == "0 0"
