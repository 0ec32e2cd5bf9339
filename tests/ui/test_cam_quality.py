"""The Grad-CAM card's target and faithfulness choices in Chromium: "what lowers it" and
"faithfulness" send ``target: negative`` and ``quality: true``; the AUCs shown are the job's,
beside the random map's, with the curves picture; without faithfulness none is shown."""

from __future__ import annotations

from tests.ui.conftest import screenshot
from tests.ui.flows import JOB_TIMEOUT, contract_of, latest_job, use_sample, wait_image, wait_ready
from tests.ui.test_compare import shown

AUCS = ("deletion_auc", "random_deletion_auc", "insertion_auc", "random_insertion_auc")


def test_negative_target_and_faithfulness(page, api_url: str, page_errors: list[str]) -> None:
    contract = contract_of(api_url)
    wait_ready(page)
    use_sample(page, "star")
    values = page.eval_on_selector_all("#cam-target option", "os => os.map(o => o.value)")
    assert values == contract["targets"]
    page.select_option("#cam-method", "gradcam")
    page.select_option("#cam-target", "negative")
    page.check("#cam-quality")
    page.click("#cam-run")
    page.wait_for_selector("#cam-quality-result:not([hidden])", timeout=JOB_TIMEOUT)
    assert wait_image(page, "#cam-quality-curves") > 400
    job = latest_job(api_url, "gradcam")
    assert job["options"]["target"] == "negative"
    assert job["options"]["quality"] == contract["quality_option_defaults"]
    quality = job["result"]["items"][0]["quality"]
    for key in AUCS:
        assert page.inner_text(f"#cam-quality-summary [data-auc='{key}']") == \
            shown(quality[key]), key
    screenshot(page.locator("#gradcam-card"), "gradcam-quality")

    page.uncheck("#cam-quality")
    page.select_option("#cam-target", "class")
    page.click("#cam-run")
    page.wait_for_selector("#cam-quality-result[hidden]", state="attached",
                           timeout=JOB_TIMEOUT)
    assert latest_job(api_url, "gradcam")["options"]["quality"] is False
    assert page_errors == [], page_errors
