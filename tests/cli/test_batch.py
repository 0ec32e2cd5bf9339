"""`convscope batch`: 20 images, interrupted half way, resumed: each image done exactly once;
and rate-limit refusals (429) waited out without a job sent twice."""

from __future__ import annotations

import csv
import dataclasses
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from pathlib import Path

import redis

from tests.cli.conftest import write_shape_images
from tests.pipeline import wait_until
from tests.service.job_http import NS, QueueCount


def results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_batch_resumes_without_repeating(api_url: str, tmp_path: Path, reaper: list) -> None:
    images = write_shape_images(tmp_path / "images", 20)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "service.cli", "batch", str(tmp_path / "images"),
           "--model", "shapes", "--kind", "gradcam", "--out", str(out), "--url", api_url,
           "-j", "2"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    reaper.append(first)
    wait_until(lambda: len(results(out)) >= 6 or first.poll() is not None, 120,
               "the first run to finish 6 images", interval=0.1)
    first.send_signal(signal.SIGINT)
    first.wait(30)
    partial = results(out)
    assert 6 <= len(partial) < 20, "the first run should be interrupted half way"

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    rows = results(out)
    names = [row["image"] for row in rows]
    assert sorted(names) == sorted(str(p) for p in images)  # every image exactly once
    assert all(row["status"] == "succeeded" for row in rows)
    assert f"{len(partial)} already done" in second.stdout
    with (out / "summary.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 20
    for image in images:
        assert (out / image.stem / "overlay.png").exists()


class NewWindowAfter429:
    """WSGI middleware in front of the app: records every POST /v1/jobs answer per
    Idempotency-Key, and right after the app's own rate limiter answers 429 it starts a new
    window (drops the tenant's counters) and sets Retry-After to 1 s. The limit stays the app's;
    only the window's end comes when the test needs it, not when the clock says."""

    def __init__(self, app, r: redis.Redis, tenant: str) -> None:
        self.app, self.r, self.tenant = app, r, tenant
        self.answers: dict[str, list[int]] = defaultdict(list)
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        post = environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/v1/jobs"

        def start(status: str, headers: list, exc_info=None):
            code = int(status.split()[0])
            if post:
                with self.lock:
                    self.answers[environ.get("HTTP_IDEMPOTENCY_KEY", "")].append(code)
            if code == 429:
                for key in self.r.scan_iter(f"{NS}:rate:{self.tenant}:*"):
                    self.r.delete(key)
                headers = [(k, "1" if k.lower() == "retry-after" else v) for k, v in headers]
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def test_batch_waits_out_429s(settings, worker, tmp_path: Path) -> None:
    """``convscope batch``'s engine against a live API limited to 2 new jobs per window.

    6 images and 2 jobs per window: even if a real window ended mid-run, two windows hold at
    most 4 jobs, so the limiter must refuse at least one POST whatever the speed."""
    from werkzeug.serving import make_server

    from service.app import create_app
    from service.auth import tenant_of
    from service.batch import run_batch
    from service.client import Client

    key = uuid.uuid4().hex
    r = redis.Redis.from_url(settings.redis_url)
    app = create_app(dataclasses.replace(settings, api_keys=(key,), rate_limit="2/hour"))
    served = NewWindowAfter429(app.wsgi_app, r, tenant_of(key))
    app.wsgi_app = served
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    images = write_shape_images(tmp_path / "in", 6)
    try:
        client = Client(f"http://127.0.0.1:{server.server_port}", api_key=key)
        summary = run_batch(client, str(tmp_path / "in"), tmp_path / "out", concurrency=4,
                            model="shapes", kind="gradcam", layer=None, options={})
    finally:
        server.shutdown()
    answers = dict(served.answers)
    assert summary == {"done": len(images), "failed": 0, "skipped": 0}, answers
    assert len(answers) == len(images)  # one Idempotency-Key per image
    assert sum(codes.count(429) for codes in answers.values()) >= 1, answers  # limited ...
    for codes in answers.values():  # ... and every refusal waited out, then accepted once
        assert codes[-1] == 202 and set(codes[:-1]) <= {429}, answers
    jobs = QueueCount.read(r, tenant_of(key)).jobs
    assert jobs == len(images)  # one job per image: no duplicates from the retries
