"""The page follows a job through GET /v1/jobs/{id}/events (Server-Sent Events, read with
fetch so an API key goes along) instead of polling GET /v1/jobs/{id}; it polls only when the
stream cannot be had; Cancel DELETEs the job and closes the stream.

The filter search's steps are drawn at random so that no pattern cache of an earlier run
answers the job at once (a cached job reports no progress on its way)."""

from __future__ import annotations

import json
import random
from urllib.parse import urlparse

import requests

from tests.ui.conftest import UI_KEY, open_page
from tests.ui.flows import JOB_TIMEOUT, wait_image, wait_ready

RECORD_PERCENTS = """() => {
  window.shownPercents = [];
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) window.shownPercents.push(n.textContent);
  }).observe(document.getElementById('filters-percent'), { childList: true });
}"""
DONE = "() => document.getElementById('filters-status').textContent.startsWith('done: ')"


class Traffic:
    """The page's requests."""

    def __init__(self, page) -> None:
        self.requests: list = []
        page.on("request", lambda r: self.requests.append(r))

    def to(self, path: str, method: str = "GET") -> list:
        return [r for r in self.requests if r.method == method and urlparse(r.url).path == path]


def start_filters(page, last: int, steps: int) -> str:
    """Fill in channels 0…last and ``steps``, click Find patterns, wait until the page asks for
    the new job's event stream (it knows the job's id then); that id."""
    page.fill("#filters-from", "0")
    page.fill("#filters-to", str(last))
    page.fill("#filters-steps", str(steps))
    with page.expect_request(lambda r: urlparse(r.url).path.endswith("/events")) as streamed, \
            page.expect_response(lambda r: r.request.method == "POST"
                                 and urlparse(r.url).path == "/v1/jobs") as posted:
        page.click("#filters-run")
    job_id = posted.value.json()["id"]
    assert urlparse(streamed.value.url).path == f"/v1/jobs/{job_id}/events"
    return job_id


def percents(page) -> list[int]:
    return [int(t.rstrip("%")) for t in page.evaluate("window.shownPercents")]


def fresh_steps() -> int:
    return random.randrange(41, 120)


def test_the_filters_card_follows_the_event_stream(page, api_url: str,
                                                   page_errors: list[str]) -> None:
    traffic = Traffic(page)
    wait_ready(page)
    page.evaluate(RECORD_PERCENTS)
    job_id = start_filters(page, 5, fresh_steps())
    page.wait_for_function(DONE, timeout=JOB_TIMEOUT)
    page.wait_for_selector("#filters-result:not([hidden])")
    assert page.locator("#filters-list figure").count() == 6
    assert wait_image(page, "#filters-list figure:nth-child(1) img") > 0

    streams = traffic.to(f"/v1/jobs/{job_id}/events")
    assert len(streams) == 1
    assert streams[0].headers.get("accept") == "text/event-stream"
    # Not one GET of the job itself: every status and progress the card showed came from the
    # stream (the only other requests about the job are its POST and its artifacts).
    assert traffic.to(f"/v1/jobs/{job_id}") == []
    about_job = {urlparse(r.url).path for r in traffic.requests if job_id in r.url}
    assert about_job - {f"/v1/jobs/{job_id}/events"} <= {
        f"/v1/jobs/{job_id}/artifacts/filter_{i}" for i in range(6)}

    shown = percents(page)
    assert shown == sorted(shown), shown
    assert shown[-1] == 100
    assert any(0 < p < 100 for p in shown), shown  # live progress on the way, not only the end
    job = requests.get(f"{api_url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "succeeded"
    assert page_errors == [], page_errors


def test_the_card_shows_what_the_stream_says(page, api_url: str, page_errors: list[str]) -> None:
    """A crafted stream (CRLF line ends, a keep-alive comment, an event of another type) for the
    real job: the card shows its progress and its failure, and asks the API nothing else."""
    crafted: list[str] = []

    def serve(route) -> None:
        job_id = urlparse(route.request.url).path.split("/")[3]
        running = {"id": job_id, "kind": "filters", "status": "running", "progress": 0.37,
                   "error": None, "result": None}
        failed = {**running, "status": "failed",
                  "error": {"code": "crafted", "message": "made up by the test"}}
        body = (": keep-alive\r\n\r\n"
                f"event: status\r\ndata: {json.dumps(running)}\r\n\r\n"
                "event: other\r\ndata: {\"status\": \"succeeded\"}\r\n\r\n"
                f"event: status\r\ndata: {json.dumps(failed)}\r\n\r\n")
        crafted.append(job_id)
        route.fulfill(status=200, content_type="text/event-stream", body=body)

    page.route("**/v1/jobs/*/events", serve)
    traffic = Traffic(page)
    wait_ready(page)
    page.evaluate(RECORD_PERCENTS)
    job_id = start_filters(page, 3, fresh_steps())
    try:
        page.wait_for_function(
            "() => document.getElementById('filters-error').textContent.includes('made up')")
        assert crafted == [job_id]
        assert "made up by the test" in page.inner_text("#filters-error")
        assert 37 in percents(page)
        assert page.inner_text("#filters-percent") == "37%"  # not moved on to 100% by a failure
        assert page.is_enabled("#filters-run")
        assert page.is_disabled("#filters-cancel")
        assert traffic.to(f"/v1/jobs/{job_id}") == []
        assert page_errors == [], page_errors
    finally:
        requests.delete(f"{api_url}/v1/jobs/{job_id}", timeout=10)


def test_cancel_deletes_the_job_and_closes_its_stream(page, api_url: str,
                                                      page_errors: list[str]) -> None:
    """The events request is held unanswered: Cancel does not wait for the stream to tell it
    the job ended: the DELETE's answer ends the wait, and the stream is aborted."""
    held: list = []
    page.route("**/v1/jobs/*/events", lambda route: held.append(route))  # never answered
    traffic = Traffic(page)
    wait_ready(page)
    job_id = start_filters(page, 15, 200)
    assert page.is_enabled("#filters-cancel")
    with page.expect_event("requestfailed",
                           lambda r: urlparse(r.url).path == f"/v1/jobs/{job_id}/events"):
        with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
            page.click("#filters-cancel")
    assert urlparse(deleted.value.url).path == f"/v1/jobs/{job_id}"
    page.wait_for_function(
        "() => document.getElementById('filters-status').textContent === 'canceled'")
    assert page.is_enabled("#filters-run")
    assert page.is_disabled("#filters-cancel")
    assert page.inner_text("#filters-error") == ""
    assert len(held) == 1
    assert traffic.to(f"/v1/jobs/{job_id}") == []  # no polling while the stream was pending
    job = requests.get(f"{api_url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "canceled"
    assert page_errors == [], page_errors


def test_a_failed_stream_falls_back_to_polling(page, api_url: str,
                                               page_errors: list[str]) -> None:
    problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503,
               "code": "unavailable", "detail": "no streams today"}
    page.route("**/v1/jobs/*/events", lambda route: route.fulfill(
        status=503, content_type="application/problem+json", body=json.dumps(problem)))
    traffic = Traffic(page)
    wait_ready(page)
    job_id = start_filters(page, 3, fresh_steps())
    page.wait_for_function(DONE, timeout=JOB_TIMEOUT)
    assert page.locator("#filters-list figure").count() == 4
    assert page.inner_text("#filters-percent") == "100%"
    assert page.inner_text("#filters-error") == ""
    assert len(traffic.to(f"/v1/jobs/{job_id}/events")) == 1
    polls = traffic.to(f"/v1/jobs/{job_id}")
    assert polls and all("wait=1" in r.url for r in polls)
    # The only complaint is the browser's own note of the 503.
    assert all("503" in e for e in page_errors), page_errors


def test_with_an_api_key_the_stream_is_read_with_it(browser, keyed_api_url: str,
                                                    page_errors: list[str]) -> None:
    # Without the key the keyed server refuses the stream: the page's success needs the header.
    assert requests.get(f"{keyed_api_url}/v1/jobs/nothing/events", timeout=10).status_code == 401
    traffic: list[Traffic] = []

    def keyed(page) -> None:
        page.add_init_script(f"localStorage.setItem('convscope.apiKey', {json.dumps(UI_KEY)})")
        traffic.append(Traffic(page))

    page = open_page(browser, keyed_api_url, page_errors, before=keyed)
    try:
        wait_ready(page)
        page.evaluate(RECORD_PERCENTS)
        job_id = start_filters(page, 3, fresh_steps())
        page.wait_for_function(DONE, timeout=JOB_TIMEOUT)
        assert page.locator("#filters-list figure").count() == 4
        assert wait_image(page, "#filters-list figure:nth-child(4) img") > 0
        streams = traffic[0].to(f"/v1/jobs/{job_id}/events")
        assert len(streams) == 1
        assert streams[0].headers.get("authorization") == f"Bearer {UI_KEY}"
        assert traffic[0].to(f"/v1/jobs/{job_id}") == []
        shown = percents(page)
        assert shown == sorted(shown) and shown[-1] == 100, shown
        stream = requests.get(f"{keyed_api_url}/v1/jobs/{job_id}/events", timeout=30,
                              headers={"Authorization": f"Bearer {UI_KEY}"})
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert '"status": "succeeded"' in stream.text
        assert page_errors == [], page_errors
    finally:
        page.context.close()


def test_the_sse_parser(page) -> None:
    """sseParser on pieces split mid-line, mid-JSON and between CR and LF, with a keep-alive
    comment, a field without its space, a multi-line data and an unknown field."""
    wait_ready(page)
    parsed = page.evaluate("""async () => {
      const { sseParser } = await import('/ui/js/api.js');
      const parse = sseParser();
      const pieces = [
        ': keep-alive\\n\\n',
        'event: status\\ndata: {"status":"run',
        'ning","progress":0.5}\\r',
        '\\n\\r\\n: keep-alive\\n\\nid: 7\\nretry: 10\\n',
        'data:a\\ndata: b\\n\\nevent: status\\ndata: {"status":"succeeded"}\\n',
        '\\n',
        'event: status\\n\\ndata: unfinished',
      ];
      return pieces.map((p) => parse(p));
    }""")
    assert parsed == [
        [],
        [],
        [],
        [{"type": "status", "data": '{"status":"running","progress":0.5}'}],
        [{"type": "message", "data": "a\nb"}],
        [{"type": "status", "data": '{"status":"succeeded"}'}],
        [],  # an event without data is dropped; one without its blank line is not done
    ]
