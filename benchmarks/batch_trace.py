"""Where a ``convscope batch`` run's time goes: each job's timeline and each process's CPU.

``make bench-service`` says how fast ``convscope batch`` is against the in-process engine;
this says why. It starts ``convscope up`` with one worker (as ``benchmarks/service.py``
does), writes a folder of random images, and runs ``convscope batch`` over it ``--runs``
times, each run after the engine measured in-process on the same images (batch 32, the
reference of ``make bench-service``). For each run it prints:

- the run's seconds against the engine's, and their ratio;
- the CPU seconds of the CLI, the API (gunicorn), the worker (Celery, main process and
  child) and Redis over the run, read from ``/proc`` (the CLI's from its rusage), and the
  machine's idle and stolen core-seconds (``/proc/stat``): idle time is where the run left
  a core unused, steal where the hypervisor gave it to another VM;
- each job: its images, when it was created, started and finished (seconds from the CLI's
  start, from the job's record), and its share of the model calls (the ``seconds`` per image
  its items report, summed: a job merged with others shares their call).

A run in which any image failed is an error: its timeline would not be the batch's.

``python benchmarks/batch_trace.py`` traces ResNet50 (``weights=None``) on 64 images of
224², as ``make bench-service`` measures it; ``--model shapes --size 64`` the built-in
model; ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.dataset import cpu_seconds  # noqa: E402
from benchmarks.service import REST, Service, engine_rates, write_images  # noqa: E402

LAYERS = {"resnet50": "conv5_block3_out", "shapes": "conv4"}  # the engine's reference layer
GROUPS = {"api": "gunicorn", "worker": "celery", "redis": "redis-server"}


def load_reference(model: str, tmp: Path) -> tuple[object, str]:
    """The Keras model ``model`` (``resnet50`` or ``shapes``) and its input preprocessing."""
    if model == "shapes":
        import keras

        return keras.saving.load_model(ROOT / "data" / "models" / "shapes-v1.keras",
                                       compile=False), "raw"
    from models.zoo import load_builtin

    loaded = load_builtin(model, tmp)
    return loaded.model, loaded.info.preprocess


def machine_now() -> dict[str, float]:
    """The machine's idle and stolen core-seconds so far (``/proc/stat``'s first line)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return {"idle": (fields[3] + fields[4]) / tick, "steal": fields[7] / tick}


def cpu_now(groups: dict[str, list[int]]) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cli": usage.ru_utime + usage.ru_stime,
            **{name: sum(map(cpu_seconds, pids)) for name, pids in groups.items()},
            **machine_now()}


def timeline(url: str, out: Path, start: float) -> list[dict]:
    """Each job of the run whose ``results.jsonl`` is in ``out``, in the order created:
    images, created/started/finished (seconds from ``start``, a ``time.time()``), model."""
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    jobs = []
    for job_id in {row["job"] for row in rows}:
        job = requests.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
        items = (job.get("result") or {}).get("items") or []
        jobs.append({"id": job_id, "images": len(items), "status": job["status"],
                     **{k: round(job[k] - start, 3) for k in ("created", "started",
                                                              "finished")},
                     "model": round(sum(item.get("seconds", 0.0) for item in items), 3)})
    return sorted(jobs, key=lambda j: j["created"])


def trace_once(svc: Service, folder: Path, out: Path, model: str,
               reference: Callable[[], float]) -> dict:
    """One run: the engine's seconds for the folder's images, then the batch's, traced."""
    time.sleep(REST)
    engine = len(list(folder.iterdir())) / reference()
    time.sleep(REST)
    groups = {name: svc.pids(needle) for name, needle in GROUPS.items()}
    missing = [name for name, pids in groups.items() if not pids]
    if missing:
        raise RuntimeError(f"no {', '.join(missing)} process under convscope up")
    before, start = cpu_now(groups), time.time()
    done = subprocess.run([sys.executable, "-m", "service.cli", "batch", str(folder),
                           "--model", model, "--kind", "gradcam", "--out", str(out),
                           "--url", svc.url], capture_output=True, text=True, cwd=ROOT)
    seconds = time.time() - start
    if done.returncode != 0 or f"{len(list(folder.iterdir()))} done, 0 failed" not in done.stdout:
        raise RuntimeError(f"batch failed: {done.stdout[-500:]} {done.stderr[-2000:]}")
    after = cpu_now(groups)
    return {"seconds": seconds, "engine": engine, "ratio": engine / seconds,
            "cpu": {k: after[k] - before[k] for k in before},
            "jobs": timeline(svc.url, out, start)}


def report(run: dict) -> None:
    print(f"batch {run['seconds']:.2f} s, engine {run['engine']:.2f} s: "
          f"{run['ratio']:.2f}x the engine")
    print("  CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in run["cpu"].items()))
    for job in run["jobs"]:
        per = 1000 * job["model"] / max(1, job["images"])
        print(f"  job of {job['images']:3d}: created {job['created']:.3f}, started "
              f"{job['started']:.3f}, finished {job['finished']:.3f}; model "
              f"{job['model']:.3f} s ({per:.1f} ms an image)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(LAYERS), default="resnet50")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224, help="image side, pixels")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the runs' figures here")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="convscope-trace-"))
    model, preprocess = load_reference(args.model, tmp)
    folder = write_images(tmp / "images", args.images, args.size, 2)
    pixels = np.stack([np.asarray(Image.open(p))
                       for p in sorted(folder.iterdir())]).astype(np.float32)

    def reference() -> float:
        return engine_rates(model, LAYERS[args.model], pixels, batch=32, rendered=False,
                            preprocess=preprocess)[0]

    svc = Service(1, tmp / "service")
    try:  # a first batch: the worker loads the model and traces its batch sizes
        trace_once(svc, folder, tmp / "warm", args.model, reference)
        runs = []
        for i in range(args.runs):
            runs.append(trace_once(svc, folder, tmp / f"out-{i}", args.model, reference))
            report(runs[-1])
    finally:
        svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"median ratio {statistics.median(r['ratio'] for r in runs):.2f}x the engine")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
