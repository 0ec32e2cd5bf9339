"""`convscope batch`: 20 images in multi-image jobs, interrupted half way, resumed: each image
done exactly once; every input its own output folder (``a.png/`` and ``a.jpg/``); and
rate-limit refusals (429) waited out without a job sent twice."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import redis
from PIL import Image

from tests.cli.conftest import write_shape_images
from tests.pipeline import wait_until
from tests.service.job_http import NS, QueueCount


def results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class HoldJobs:
    """WSGI middleware: lets the first ``allowed`` POST /v1/jobs through and holds every later
    one until ``release`` is set, so a batch stops making progress at a known point."""

    def __init__(self, app, allowed: int) -> None:
        self.app, self.allowed = app, allowed
        self.posts, self.lock, self.release = 0, threading.Lock(), threading.Event()

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/v1/jobs":
            with self.lock:
                self.posts += 1
                held = self.posts > self.allowed
            if held:
                self.release.wait(120)
        return self.app(environ, start_response)


@contextmanager
def serve(app) -> Iterator[str]:
    """``app`` on a free port (werkzeug, threaded) for the length of the block."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def batch_cmd(source: Path, out: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", "batch", str(source), "--model", "shapes",
            "--kind", "gradcam", "--out", str(out), "--url", url, *extra]


def _held_run(settings, images: Path, out: Path, reaper: list, interrupts: int,
              spelled: str | None = None) -> tuple[subprocess.Popen, str, int]:
    """A ``convscope batch`` of ``images`` (2 jobs in flight) against an API that holds every
    job after the first two: once those two are recorded, ``interrupts`` SIGINTs, then the
    held jobs are let through. Returns the ended run, its stderr and the jobs it sent.
    ``spelled``: SOURCE as given (run from ``images``' parent)."""
    from service.app import create_app

    app = create_app(settings)
    hold = HoldJobs(app.wsgi_app, allowed=2)
    app.wsgi_app = hold
    per_job = settings.max_images_per_job
    with serve(app) as held_url:
        # SIGINT as a terminal's Ctrl-C delivers it, to a CLI that handles it: a background
        # job of a shell without job control (a CI runner's, say) starts with it ignored,
        # and Python then never raises KeyboardInterrupt
        run = subprocess.Popen(batch_cmd(Path(spelled or images), out, held_url, "-j", "2"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=images.parent,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        reaper.append(run)
        wait_until(lambda: len(results(out)) >= 2 * per_job or run.poll() is not None, 120,
                   "the first run to finish its first two jobs", interval=0.1)
        for _ in range(interrupts):
            run.send_signal(signal.SIGINT)
            time.sleep(0.3)
        if interrupts > 1:  # quit at once: the held jobs are not waited for
            run.wait(20)
        hold.release.set()
        _, err = run.communicate(timeout=120)
    return run, err, hold.posts


def test_batch_resumes_without_repeating(settings, api_url: str, tmp_path: Path,
                                         reaper: list) -> None:
    """20 images, 4 per job (the test server's maximum), 2 jobs in flight: the first run is
    held after its first two jobs and interrupted (Ctrl-C): it sends no more jobs, records
    the two in flight as they end, and exits 130; the run resumed with SOURCE spelled
    another way (relative, from its parent) sends only the rest."""
    images = write_shape_images(tmp_path / "images", 20)
    out = tmp_path / "out"
    per_job = settings.max_images_per_job
    first, err, sent = _held_run(settings, tmp_path / "images", out, reaper, interrupts=1)
    assert first.returncode == 130, err
    assert "no more jobs are sent" in err
    partial = results(out)
    # the jobs in flight (1 or 2: the second may not have been sent yet) recorded too
    assert sent in (3, 4) and len(partial) == sent * per_job, (sent, partial)
    assert len({row["job"] for row in partial}) == sent
    assert all((out / Path(row["image"]).name / "item.json").exists() for row in partial)

    second = subprocess.run(batch_cmd(Path("images"), out, api_url, "-j", "2"),
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    rows = results(out)
    assert sorted(row["folder"] for row in rows) == sorted(p.name for p in images)  # once each
    assert all(row["status"] == "succeeded" for row in rows)
    assert f"{len(partial)} already done" in second.stdout
    with (out / "summary.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 20
    for image in images:
        assert (out / image.name / "overlay.png").exists()


def test_a_second_interrupt_quits_at_once(settings, tmp_path: Path, reaper: list) -> None:
    """Ctrl-C twice: the run quits without waiting for its jobs in flight (held here until
    after it exited), recording only what had ended."""
    write_shape_images(tmp_path / "images", 20)
    out = tmp_path / "out"
    run, err, _ = _held_run(settings, tmp_path / "images", out, reaper, interrupts=2)
    assert run.returncode == 130, err
    assert "quit" in err
    assert len(results(out)) == 2 * settings.max_images_per_job


def test_every_input_gets_its_own_folder(api_url: str, tmp_path: Path) -> None:
    """``a.png`` and ``a.jpg`` both kept, ``sub/b.png`` under ``sub/``; the output folder,
    inside SOURCE here, is never taken for input."""
    source = tmp_path / "images"
    first, other, third = write_shape_images(source, 3, seed=5)
    png, jpg = first.rename(source / "a.png"), source / "a.jpg"
    with Image.open(other) as img:
        img.save(jpg, format="JPEG", quality=95)
    other.unlink()
    (source / "sub").mkdir()
    third.rename(source / "sub" / "b.png")
    out = source / "out"

    done = subprocess.run(batch_cmd(source, out, api_url, "--images-per-job", "2"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "3 done, 0 failed, 0 already done" in done.stdout
    for folder in ("a.png", "a.jpg", "sub/b.png"):
        assert {p.name for p in (out / folder).iterdir()} == \
            {"item.json", "heatmap.npy", "heatmap_png.png", "overlay.png"}, folder
    assert not np.array_equal(np.load(out / "a.png" / "heatmap.npy"),
                              np.load(out / "a.jpg" / "heatmap.npy"))
    rows = results(out)
    assert sorted(row["image"] for row in rows) == sorted(
        str(p) for p in (png, jpg, source / "sub" / "b.png"))
    assert len({row["job"] for row in rows}) == 2  # 3 images, 2 per job
    assert {row["folder"] for row in rows} == {"a.png", "a.jpg", "sub/b.png"}

    again = subprocess.run(batch_cmd(source, out, api_url), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "3 done, 0 failed, 3 already done" in again.stdout  # nothing new sent
    assert len(results(out)) == 3


def test_a_batch_with_failures_exits_1(api_url: str, tmp_path: Path) -> None:
    source = tmp_path / "images"
    write_shape_images(source, 2, seed=3)
    (source / "broken.png").write_bytes(b"not a png")
    done = subprocess.run(batch_cmd(source, tmp_path / "out", api_url), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "2 done, 1 failed, 0 already done" in done.stdout


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

    12 images, 2 per job: 6 jobs and 2 jobs per window. Even if a real window ended mid-run,
    two windows hold at most 4 jobs, so the limiter must refuse at least one POST whatever
    the speed."""
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
    images = write_shape_images(tmp_path / "in", 12)
    try:
        client = Client(f"http://127.0.0.1:{server.server_port}", api_key=key)
        summary = run_batch(client, str(tmp_path / "in"), tmp_path / "out", concurrency=4,
                            images_per_job=2, model="shapes", kind="gradcam", layer=None,
                            options={})
    finally:
        server.shutdown()
    answers = dict(served.answers)
    assert summary == {"done": len(images), "failed": 0, "skipped": 0, "not_sent": 0,
                       "links": 0, "interrupted": False}, answers
    assert len(answers) == len(images) // 2  # one Idempotency-Key per job
    assert sum(codes.count(429) for codes in answers.values()) >= 1, answers  # limited ...
    for codes in answers.values():  # ... and every refusal waited out, then accepted once
        assert codes[-1] == 202 and set(codes[:-1]) <= {429}, answers
    jobs = QueueCount.read(r, tenant_of(key)).jobs
    assert jobs == len(images) // 2  # one job per 2 images: no duplicates from the retries


def test_a_name_that_is_not_utf8_keeps_its_bytes(api_url: str, tmp_path: Path) -> None:
    """``convscope batch`` over a file named in Latin-1: it is sent (it used to stop the whole
    run before any job), and OUT and ``summary.csv`` hold its name's own bytes."""
    good, odd = write_shape_images(tmp_path / "images", 2)
    odd = odd.rename(tmp_path / "images" / os.fsdecode(b"caf\xe9.png"))
    out = tmp_path / "out"
    done = subprocess.run(batch_cmd(tmp_path / "images", out, api_url), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 done, 0 failed" in done.stdout
    assert (out / odd.name / "overlay.png").is_file()
    assert b"caf\xe9.png" in (out / "summary.csv").read_bytes()
    again = subprocess.run(batch_cmd(tmp_path / "images", out, api_url), capture_output=True,
                           text=True, timeout=300)
    assert "2 done, 0 failed, 2 already done" in again.stdout, again.stdout + again.stderr
