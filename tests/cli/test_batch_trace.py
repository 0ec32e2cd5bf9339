"""``benchmarks/batch_trace.py`` on 96 small images of the ``shapes`` model: a real
``convscope up`` and ``convscope batch``, every job of the run on its timeline and every
process's CPU counted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.conftest import ROOT, clean_env


@pytest.mark.slow
def test_trace_puts_every_job_on_the_runs_timeline(shapes_model: object, tmp_path) -> None:
    out = tmp_path / "trace.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/batch_trace.py", "--model", "shapes", "--images", "96",
         "--size", "64", "--runs", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads(out.read_text())
    assert len(run["jobs"]) >= 3  # 32 images a job at most (benchmarks/service.py)
    assert sum(job["images"] for job in run["jobs"]) == 96
    for job in run["jobs"]:
        assert job["status"] == "succeeded"
        assert 0 <= job["created"] <= job["started"] <= job["finished"] <= run["seconds"], job
        assert 0 < job["model"] <= job["finished"] - job["started"] + 0.002, job
    # the CLI imports for a tenth of a second at least; the API decodes 96 uploads and the
    # worker computes them: each a few tens of milliseconds of CPU, in 10 ms ticks
    assert run["cpu"]["cli"] > 0.05 and run["cpu"]["api"] > 0 and run["cpu"]["worker"] > 0
    assert 0 < run["engine"] < run["seconds"]  # 96 tiny images: the batch's start dominates
    lines = done.stdout.splitlines()
    assert f"batch {run['seconds']:.2f} s, engine {run['engine']:.2f} s: " \
           f"{run['ratio']:.2f}x the engine" in lines
    assert sum(line.startswith("  job of ") for line in lines) == len(run["jobs"])
