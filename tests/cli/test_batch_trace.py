"""``benchmarks/batch_trace.py`` on 12 small images of the ``shapes`` model: a real
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
        [sys.executable, "benchmarks/batch_trace.py", "--model", "shapes", "--images", "12",
         "--size", "64", "--runs", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads(out.read_text())
    assert sum(job["images"] for job in run["jobs"]) == 12
    for job in run["jobs"]:
        assert job["status"] == "succeeded"
        assert 0 <= job["created"] <= job["started"] <= job["finished"] <= run["seconds"], job
        assert 0 < job["model"] <= job["finished"] - job["started"] + 0.002, job
    assert set(run["cpu"]) == {"cli", "api", "worker", "redis"}
    assert run["cpu"]["cli"] > 0 and run["cpu"]["api"] > 0 and run["cpu"]["worker"] > 0
    assert run["ratio"] == pytest.approx(run["engine"] / run["seconds"], rel=0.01)
    assert f"{run['ratio']:.2f}x the engine" in done.stdout
