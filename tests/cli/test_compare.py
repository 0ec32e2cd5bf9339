"""``convscope compare`` against a live API: every method asked for runs on one image for one
class, each row agrees with the job the method makes on its own, and the picture holds one
tile per method."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from service.compare import CAPTION, TILE, method_jobs
from tests.pipeline import WORKER_CONCURRENCY

METHODS = ("gradcam", "hirescam", "eigencam", "gradients", "integrated_gradients")
STAR = Path(__file__).resolve().parents[2] / "service" / "static" / "samples" / "star.png"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                          text=True, timeout=600)


def test_compare_runs_every_method_on_one_class(api_url: str, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    done = cli("compare", str(STAR), "--model", "shapes", "--methods", ",".join(METHODS),
               "--steps", "8", "--out", str(out), "--url", api_url)
    assert done.returncode == 0, done.stdout + done.stderr
    with (out / "compare.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == list(METHODS)
    assert [r["kind"] for r in rows] == ["gradcam"] * 3 + ["saliency"] * 2
    assert {r["status"] for r in rows} == {"succeeded"}
    assert len({r["class_index"] for r in rows}) == 1  # one class for every method
    for row in rows:
        for key in ("deletion_auc", "insertion_auc", "random_deletion_auc",
                    "random_insertion_auc"):
            assert 0.0 <= float(row[key]) <= 1.0, row
        assert float(row["seconds"]) > 0
        assert (out / row["method"] / "overlay.png").is_file()
        assert (out / row["method"] / "quality_curves.png").is_file()
    # the random map is drawn from the seed alone: the same reference for every method
    assert len({(r["random_deletion_auc"], r["random_insertion_auc"]) for r in rows}) == 1
    for name in METHODS:
        assert name in done.stdout

    # each row is what that method's own job gives (same options, asked directly)
    options = {"method": "hirescam", "quality": {"baseline": "blur", "steps": 8}}
    with STAR.open("rb") as fh:
        job = requests.post(f"{api_url}/v1/jobs?wait=60", files={"image": fh}, data={
            "model": "shapes", "kind": "gradcam", "options": json.dumps(options)},
            timeout=120).json()
    quality = job["result"]["items"][0]["quality"]
    hires = rows[1]
    assert np.isclose(float(hires["deletion_auc"]), quality["deletion_auc"], atol=1e-6)
    assert np.isclose(float(hires["insertion_auc"]), quality["insertion_auc"], atol=1e-6)

    sheet = Image.open(out / "compare.png")
    assert sheet.size == (5 * (TILE + 4) + 4, TILE + CAPTION + 8)


def test_compare_refuses_an_unknown_method(api_url: str, tmp_path: Path) -> None:
    done = cli("compare", str(STAR), "--model", "shapes", "--methods", "gradcam,nope",
               "--out", str(tmp_path / "cmp"), "--url", api_url)
    assert done.returncode != 0
    assert "nope" in done.stderr and "gradcam" in done.stderr
    assert not (tmp_path / "cmp").exists()


def test_method_jobs_follow_the_contract() -> None:
    contract = {"kinds": ["gradcam", "saliency"], "cam_methods": ["gradcam", "eigencam"],
                "saliency_methods": ["gradients"]}
    assert method_jobs(contract) == [("gradcam", "gradcam"), ("gradcam", "eigencam"),
                                     ("saliency", "gradients")]
    assert method_jobs(contract, ["gradients", "gradcam"]) == [("saliency", "gradients"),
                                                               ("gradcam", "gradcam")]
    assert method_jobs({**contract, "kinds": ["gradcam"]}) == [("gradcam", "gradcam"),
                                                               ("gradcam", "eigencam")]


def test_items_time_their_maps_and_say_when_they_traced(api_url: str) -> None:
    """The same job four times, one after the other: each reports the map's seconds per image,
    and each worker process traces the step at most once, so at most WORKER_CONCURRENCY of
    them (the session worker's processes) say they traced."""
    items = []
    for _ in range(2 * WORKER_CONCURRENCY):
        with STAR.open("rb") as fh:
            job = requests.post(f"{api_url}/v1/jobs?wait=60", files={"image": fh}, data={
                "model": "shapes", "kind": "saliency",
                "options": json.dumps({"method": "guided_backprop"})}, timeout=120).json()
        items.append(job["result"]["items"][0])
    assert all(item["seconds"] > 0 for item in items)
    assert sum(item["traced"] for item in items) <= WORKER_CONCURRENCY
    assert all(isinstance(item["traced"], bool) for item in items)
