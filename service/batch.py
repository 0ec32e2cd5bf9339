"""``convscope batch``: a job per image, a few at a time, resumable.

Progress is kept in ``OUT/results.jsonl`` (one line per finished image, appended as soon as
it is done): a second run skips every image that succeeded there, so an interrupted batch
resumes without doing any image twice (failed images are tried again). Transient failures
(connection errors, 429/502-504) are retried by the client's session (urllib3 ``Retry``), after
the server's Retry-After, else with backoff.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import click

from service.client import ApiError, Client

RATE_RETRIES = 60  # transient answers (429 after Retry-After) one request may wait out
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def find_images(source: str) -> list[Path]:
    path = Path(source)
    found = sorted(path.iterdir()) if path.is_dir() else sorted(map(Path, glob.glob(source)))
    return [p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def load_done(results: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if results.exists():
        for line in results.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row["status"] == "succeeded":  # failures are tried again
                    done[row["image"]] = row
    return done


def _one(client: Client, image: Path, out: Path, run_id: str, **job_args: Any) -> dict:
    """One image's job. The client retries transient failures (429 after its Retry-After);
    retries reuse one Idempotency-Key, so a job created before a failure is waited for rather
    than sent twice."""
    key = f"batch-{run_id}-{hashlib.sha256(str(image).encode()).hexdigest()[:24]}"
    try:
        job = client.wait(client.submit([image], idempotency_key=key, **job_args))
    except ApiError as exc:
        return {"image": str(image), "status": "failed", "error": str(exc)}
    row = {"image": str(image), "job": job["id"], "status": job["status"]}
    if job["status"] != "succeeded":
        row["error"] = json.dumps(job.get("error"))
        return row
    client.artifacts(job, out_dir=out / image.stem)
    top = (job["result"]["items"][0].get("predictions") or [{}])[0]
    row.update(top_index=top.get("index"), top_label=top.get("label"),
               top_score=top.get("score"))
    return row


def run_batch(client: Client, source: str, out: Path, concurrency: int = 4,
              **job_args: Any) -> dict:
    """Run SOURCE's images through ``client`` (the CLI gives it a client that retries up to
    :data:`RATE_RETRIES` times per request, so a rate-limited batch waits out many 429s)."""
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = load_done(results)
    images = find_images(source)
    todo = [p for p in images if str(p) not in done]
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool, \
            click.progressbar(length=len(todo), label="images", file=None) as bar:
        run_id = uuid.uuid4().hex[:12]  # a resumed run sends failed images again
        futures = [pool.submit(_one, client, p, out, run_id, **job_args) for p in todo]
        for future in as_completed(futures):
            row = future.result()
            with lock, results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            done[row["image"]] = row
            bar.update(1)
    rows = [done[str(p)] for p in images if str(p) in done]  # the latest result per image
    fields = ["image", "job", "status", "top_index", "top_label", "top_score", "error"]
    with (out / "summary.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    failed = sum(1 for r in rows if r["status"] != "succeeded")
    return {"done": len(rows) - failed, "failed": failed,
            "skipped": len(images) - len(todo)}
