"""`convscope batch`: 20 images, interrupted half way, resumed: each image done exactly once."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.conftest import write_shape_images


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
    deadline = time.monotonic() + 120
    while len(results(out)) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
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
