"""Dataset jobs scaled out: ``top_examples`` with 1 and 2 worker processes, and in-process.

``make bench-dataset`` (or ``python benchmarks/dataset.py [--quick] [--images N]
[--chunk N]``). A shapes dataset made by ``convscope datasets make-shapes`` (5,000 images,
500 with ``--quick``) in a temp folder is registered by folder (``CONVSCOPE_DATASET_ROOTS``
set for the benchmark's service) with ``convscope up --workers 1`` and then ``--workers 2``;
each runs ``top_examples`` on layer ``conv4`` of the trained ``shapes`` model, all channels,
``k`` 9, ``chunk_images`` ``--chunk``. The reference, in the same run: an in-process loop
over the same files, as a notebook would do it (read and decode each PNG, then
:class:`models.top_examples_scan.TopExamplesScanner` ``partial`` per chunk, ``merge``,
``finish``). Every figure is the median of 3 runs (1 with ``--quick``), each after an
untimed warm-up run; targets: 2 workers >= 1.7x faster than 1, and the service's time per
image with 1 worker within 1.5x of the in-process loop's. The CPU each process type spent
per image (from ``/proc``) says where the time went.

Workers are sized one core each (``--tf-threads 1``, ``CONVSCOPE_TF_THREADS``), the way one
scales out: a second worker brings a second core's worth. The in-process loop keeps
TensorFlow's default threads (every core), as in a notebook. ``--tf-threads 0`` measures
``convscope up``'s own sizing instead (cores / workers: one worker then has both cores and
is as fast as the loop, and a second worker has little left to add on 2 cores).

Chunk size: 125 by default. The job's tail (one worker still busy while the other is idle)
is at most one chunk, so the chunks must be many per worker: 5,000 images make 40 chunks, 20
per worker, a tail of at most 1/20 of a worker's share. Per-chunk costs (a Celery message,
the claim, the partial's write to Redis) are a few milliseconds against the chunk's
compute of about 0.2 s. And 125 divides the dataset: every chunk has the same batch shape,
so no worker traces the model again for a short last chunk inside a timed run (the
service's default, 128, leaves one chunk of 8 images).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.service import Service  # noqa: E402 (after the path is set)

MODEL, LAYER, K = "shapes", "conv4", 9
TARGETS = {"two_vs_one_worker": 1.7, "one_worker_vs_in_process": 1.5}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the in-process reference ---------------------------------------------------------------
def in_process(files: list[Path], chunk: int, runs: int) -> dict:
    """The notebook loop over ``files``: median wall and CPU seconds of ``runs`` runs (after
    a warm-up that traces the forward pass), the merged partial, and the size of one chunk's
    partial as a worker stores it in Redis (``to_bytes``, with its crops: untimed,
    the loop itself cuts no crops and draws no picture)."""
    import keras

    from models.top_examples import finish, merge_many
    from models.top_examples_scan import TopExamplesScanner

    model = keras.saving.load_model(ROOT / "data" / "models" / "shapes-v1.keras",
                                    compile=False)
    scanner = TopExamplesScanner(model, LAYER)

    def run() -> tuple[object, list]:
        partials = []
        for start in range(0, len(files), chunk):
            images = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32)
                               for p in files[start:start + chunk]])
            partials.append(scanner.partial(images, range(start, start + len(images)), k=K))
        merged = merge_many(partials)
        finish(merged, scanner.grid())
        return merged, partials

    merged, _ = run()
    stored = stored_sizes(scanner, files, chunk)
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"seconds": statistics.median(walls), "cpu": statistics.median(cpus),
            "merged": merged, "channels": len(merged.channels),
            **stored}


def stored_sizes(scanner, files: list[Path], chunk: int) -> dict:
    """What the workers store per chunk, done one after the other (as with 1 worker): each
    partial with its crops, pruned by the floors of the chunks before it (per channel the
    k-th largest score on their top lists; ``to_bytes`` sizes; untimed)."""
    sizes, crops, tops = [], [], None
    for start in range(0, len(files), chunk):
        images = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32)
                           for p in files[start:start + chunk]])
        bounds = None if tops is None else tops[:, K - 1]
        part = scanner.partial(images, range(start, start + len(images)), k=K, crops=True,
                               floors=bounds)
        values = part.values.astype(np.float64)
        joined = values if tops is None else np.concatenate([tops, values], axis=1)
        tops = -np.sort(-joined, axis=1)[:, :K]
        sizes.append(len(part.to_bytes()))
        crops.append(0 if part.patches is None else len(part.patches.keys))
    return {"partial_bytes": sizes, "patches": crops}


# -- /proc readouts ---------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def parent_pid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def process_types(svc: Service) -> dict[str, list[int]]:
    """The service's processes by type: API, worker parents and children, Redis."""
    celery = set(svc.pids("celery"))
    return {"API (gunicorn)": svc.pids("gunicorn"),
            "worker parents": sorted(p for p in celery if parent_pid(p) not in celery),
            "worker children": sorted(p for p in celery if parent_pid(p) in celery),
            "Redis": svc.pids("redis-server")}


def cpu_by_type(types: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in pids) for name, pids in types.items()}


# -- the service ------------------------------------------------------------------------------
def run_job(client, dataset_id: str, chunk: int) -> tuple[float, dict]:
    """(seconds from submit to the end, the job) of one ``top_examples`` job."""
    start = time.perf_counter()
    job = client.submit(model=MODEL, kind="top_examples", layer=LAYER, dataset=dataset_id,
                        options={"k": K, "chunk_images": chunk})
    job = client.wait(job, timeout=1800)
    seconds = time.perf_counter() - start
    if job["status"] != "succeeded":
        raise RuntimeError(f"top_examples job ended {job['status']}: {job.get('error')}")
    return seconds, job


def redis_partials(svc: Service, job_id: str) -> tuple[list[int], list[int], int]:
    """The job's chunk partials left in Redis (none: the merge deletes them): their sizes
    (the JSON each chunk stored) and Redis's own memory for each key; and Redis's
    ``used_memory``."""
    import redis

    from service.launcher import embedded_redis_url

    client = redis.Redis.from_url(embedded_redis_url(svc.folder) or "")
    keys = list(client.scan_iter(f"*:chunks:{job_id}:partial:*", count=1000))
    return ([int(client.strlen(key)) for key in keys],
            [int(client.memory_usage(key) or 0) for key in keys],
            int(client.info("memory")["used_memory"]))


def measure_service(workers: int, tmp: Path, shapes: Path, chunk: int, runs: int,
                    profile: Path | None = None) -> dict:
    """Median seconds of ``runs`` jobs, the CPU per process type over them, and a result;
    ``profile``: py-spy samples the (first) worker child over the timed runs into it."""
    from service.client import Client

    svc = Service(workers, tmp / f"up{workers}")
    try:
        client = Client(svc.url)
        start = time.perf_counter()
        dataset = client.register_dataset(str(shapes), "shapes-bench", wait=600)
        ingest = time.perf_counter() - start
        if dataset["status"] != "ready":
            raise RuntimeError(f"dataset not ready: {json.dumps(dataset)[:500]}")
        for _ in range(workers + 1):  # warm-up: each worker loads the model, traces it,
            run_job(client, dataset["id"], chunk)  # and (most likely) merges once
        types = process_types(svc)
        spy = start_profile(types["worker children"][0], profile) if profile else None
        before = cpu_by_type(types)
        times, job = [], {}
        for _ in range(runs):
            seconds, job = run_job(client, dataset["id"], chunk)
            times.append(seconds)
        after = cpu_by_type(types)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        return {"seconds": statistics.median(times), "times": times, "ingest": ingest,
                "cpu": {name: after[name] - before[name] for name in types},
                "processes": {name: len(pids) for name, pids in types.items()},
                "job": job, "redis": redis_partials(svc, job["id"])}
    finally:
        svc.stop()


# -- profile ----------------------------------------------------------------------------------
def start_profile(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling ``pid`` into ``out`` (raw collapsed stacks) until SIGINT."""
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen([str(py_spy), "record", "-p", str(pid), "-f", "raw", "-o",
                             str(out), "--nonblocking", "--rate", "500"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def profile_summary(raw: Path, top: int = 12) -> list[str]:
    """The project's functions holding most samples (inclusive: anywhere on the stack), then
    the frames most often on top of the stack (self), as lines."""
    total, inclusive, own = 0, Counter(), Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        inclusive.update({frame: int(count) for frame in set(frames)
                          if "(worker/" in frame or "(models/" in frame})
    share = max(total, 1) / 100
    return ([f"{n / share:5.1f} %  {frame}" for frame, n in inclusive.most_common(top)]
            + ["self:"] + [f"{n / share:5.1f} %  {frame}" for frame, n in own.most_common(top)])


# -- the report -------------------------------------------------------------------------------
def agree(merged, job: dict, files: list[Path]) -> bool:
    """Whether the service's top lists are the in-process loop's (same files, same values)."""
    for row, channel in zip(merged.images, job["result"]["channels"], strict=True):
        ours = [files[i].name for i in row if i >= 0]
        theirs = [Path(top["file"]).name for top in channel["top"]]
        if ours != theirs:
            return False
    return True


def print_cpu(name: str, run: dict, n: int, runs: int) -> None:
    counts = ", ".join(f"{kind} {1000 * cpu / (n * runs):.2f} ms ({run['processes'][kind]})"
                       for kind, cpu in run["cpu"].items())
    busy = sum(run["cpu"].values()) / sum(run["times"])
    print(f"  CPU per image, {name}: {counts}; {busy:.2f} cores busy on average")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 images, 1 run each")
    parser.add_argument("--images", type=int, default=None, help="default 5000 (500 quick)")
    parser.add_argument("--chunk", type=int, default=125, help="chunk_images (default 125)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy raw output of the 1-worker service's worker child")
    parser.add_argument("--tf-threads", type=int, default=1,
                        help="CONVSCOPE_TF_THREADS of every worker: default 1, one core's "
                             "worth per worker, so a second worker adds a core; 0: convscope "
                             "up's cores / workers (one worker then already uses both cores)")
    args = parser.parse_args()
    if args.tf_threads > 0:  # read by Service's environment
        os.environ["CONVSCOPE_TF_THREADS"] = str(args.tf_threads)
    n = args.images or (500 if args.quick else 5000)
    runs = 1 if args.quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="convscope-bench-dataset-"))
    try:
        shapes = tmp / "shapes"
        subprocess.run([sys.executable, "-m", "service.cli", "datasets", "make-shapes", "--n",
                        str(n), "--out", str(shapes)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        os.environ["CONVSCOPE_DATASET_ROOTS"] = str(tmp)  # read by Service's environment
        files = sorted(shapes.glob("*.png"))
        local = in_process(files, args.chunk, runs)
        one = measure_service(1, tmp, shapes, args.chunk, runs, args.profile)
        two = measure_service(2, tmp, shapes, args.chunk, runs)
        report(n, runs, args.chunk, files, local, one, two)
        if args.profile:
            print(f"\nprofile of the worker child (1 worker), {args.profile}")
            print("\n".join("  " + line for line in profile_summary(args.profile)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(n: int, runs: int, chunk: int, files: list[Path], local: dict, one: dict,
           two: dict) -> None:
    from worker.settings import Settings

    chunks = -(-n // chunk)
    print(f"top_examples, {MODEL} {LAYER} ({local['channels']} channels), k {K}, {n} images, "
          f"chunk_images {chunk} ({chunks} chunks; service default "
          f"{Settings.from_env().dataset_chunk_images}); median of {runs} run(s); TensorFlow "
          f"threads per worker: {os.environ.get('CONVSCOPE_TF_THREADS') or 'cores / workers'}")
    print(f"in-process loop: {local['seconds']:.2f} s = {1000 * local['seconds'] / n:.2f} "
          f"ms/image ({local['cpu'] / local['seconds']:.2f} cores busy)")
    for name, run in (("1 worker", one), ("2 workers", two)):
        print(f"service, {name}: {run['seconds']:.2f} s = {1000 * run['seconds'] / n:.2f} "
              f"ms/image, {run['seconds'] / local['seconds']:.2f}x the in-process loop's "
              f"time (runs {', '.join(f'{t:.2f}' for t in run['times'])} s; folder "
              f"registered in {run['ingest']:.1f} s); same top lists as in-process: "
              f"{'yes' if agree(local['merged'], run['job'], files) else 'NO'}")
        print_cpu(name, run, n, runs)
    sizes, memory, used = two["redis"]
    kept = (f"{len(sizes)} left in Redis after the job, {int(statistics.median(memory))} bytes "
            "each by MEMORY USAGE" if sizes else "none left in Redis after the job")
    sizes_in, crops_in = local["partial_bytes"], local["patches"]
    print(f"chunk partials (chunks in turn, each pruned by the floors before it; "
          f"{local['channels']} channels, k {K}): the first {sizes_in[0]} bytes with "
          f"{crops_in[0]} crops, median {int(statistics.median(sizes_in))} bytes with "
          f"{int(statistics.median(crops_in))} crops, all {len(sizes_in)} together "
          f"{sum(sizes_in) / 2**20:.1f} MB; {kept}; Redis used_memory {used / 2**20:.1f} MB "
          f"after {runs + 3} jobs")
    values = {"two_vs_one_worker": one["seconds"] / two["seconds"],
              "one_worker_vs_in_process": one["seconds"] / local["seconds"]}
    print("\ntargets:")
    for name, target in TARGETS.items():
        at_most = name == "one_worker_vs_in_process"
        ok = values[name] <= target if at_most else values[name] >= target
        print(f"  {name:<26} {values[name]:6.2f}x  target {'<=' if at_most else '>='} "
              f"{target}x  {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
