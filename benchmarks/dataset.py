"""Dataset jobs scaled out: ``top_examples`` with 1 and 2 worker processes, and in-process.

``make bench-dataset`` (or ``python benchmarks/dataset.py [--quick] [--images N]
[--chunk N] [--rounds N]``). A shapes dataset made by ``convscope datasets make-shapes``
(5,000 images, 500 with ``--quick``) in a temp folder is registered by folder
(``CONVSCOPE_DATASET_ROOTS`` set for the benchmark's services) with ``convscope up
--workers 1`` and with ``convscope up --workers 2``, both started at once (each with its
own Redis; the one not being timed sits idle); each runs ``top_examples`` on layer ``conv4``
of the trained ``shapes`` model, all channels, ``k`` 9, ``chunk_images`` ``--chunk``. The
reference: an in-process loop over the same files, as a notebook would do it (read and
decode each PNG, then :class:`models.top_examples_scan.TopExamplesScanner` ``partial`` per
chunk, ``merge``, ``finish``).

The three are timed in rounds (5, 1 with ``--quick``), after an untimed warm-up of each:
each round runs the loop, 1 worker and 2 workers once, in an order that turns from round to
round, and each ratio is taken within a round, between runs seconds apart. The VM's speed
drifts by a third within minutes; three runs of 1 worker, then a restart and three runs of 2
workers half a minute later, measured the drift as much as the workers. Targets (the median
of the rounds' ratios): 2 workers >= 1.7x faster than 1, and the service's time per image
with 1 worker within 1.5x of the in-process loop's. The CPU each process type spent per
image (from ``/proc``) says where the time went.

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
class Loop:
    """The notebook loop over ``files``: each :meth:`timed` call one run (wall and CPU
    seconds); after a first, untimed run that traces the forward pass, which also gives the
    merged partial and the size of each chunk's partial as a worker stores it in Redis
    (``to_bytes``, with its crops: untimed, the loop itself cuts no crops and draws no
    picture)."""

    def __init__(self, files: list[Path], chunk: int) -> None:
        import keras

        from models.top_examples_scan import TopExamplesScanner

        model = keras.saving.load_model(ROOT / "data" / "models" / "shapes-v1.keras",
                                        compile=False)
        self.files, self.chunk = files, chunk
        self.scanner = TopExamplesScanner(model, LAYER)
        self.merged = self.run()
        self.channels = len(self.merged.channels)
        self.stored = stored_sizes(self.scanner, files, chunk)
        self.walls: list[float] = []
        self.cpus: list[float] = []

    def run(self) -> object:
        from models.top_examples import finish, merge_many

        files, chunk, partials = self.files, self.chunk, []
        for start in range(0, len(files), chunk):
            images = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32)
                               for p in files[start:start + chunk]])
            partials.append(self.scanner.partial(images, range(start, start + len(images)),
                                                 k=K))
        merged = merge_many(partials)
        finish(merged, self.scanner.grid())
        return merged

    def timed(self) -> float:
        wall, cpu = time.perf_counter(), time.process_time()
        self.run()
        self.walls.append(time.perf_counter() - wall)
        self.cpus.append(time.process_time() - cpu)
        return self.walls[-1]


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


class ServiceRuns:
    """``convscope up --workers N`` with the dataset registered by folder and warmed up
    (each worker loads the model, traces it, and most likely merges once); each
    :meth:`timed` call one job, its seconds, and the CPU each process type spent in it."""

    def __init__(self, workers: int, tmp: Path, shapes: Path, chunk: int) -> None:
        from service.client import Client

        self.svc, self.chunk = Service(workers, tmp / f"up{workers}"), chunk
        self.client = Client(self.svc.url)
        try:
            start = time.perf_counter()
            dataset = self.client.register_dataset(str(shapes), "shapes-bench", wait=600)
            self.ingest = time.perf_counter() - start
            if dataset["status"] != "ready":
                raise RuntimeError(f"dataset not ready: {json.dumps(dataset)[:500]}")
            self.dataset = dataset["id"]
            for _ in range(workers + 1):
                run_job(self.client, self.dataset, chunk)
        except BaseException:
            self.stop()
            raise
        self.types = process_types(self.svc)
        self.cpu = dict.fromkeys(self.types, 0.0)
        self.times: list[float] = []
        self.job: dict = {}
        self.idle = [0.0, 0.0]  # CPU seconds spent, and seconds spent, while others ran

    def total_cpu(self) -> float:
        return sum(cpu_by_type(self.types).values())

    def timed(self) -> float:
        before = cpu_by_type(self.types)
        seconds, self.job = run_job(self.client, self.dataset, self.chunk)
        after = cpu_by_type(self.types)
        for name in self.types:
            self.cpu[name] += after[name] - before[name]
        self.times.append(seconds)
        return seconds

    def summary(self) -> dict:
        return {"seconds": statistics.median(self.times), "times": self.times,
                "ingest": self.ingest, "cpu": self.cpu,
                "processes": {name: len(pids) for name, pids in self.types.items()},
                "job": self.job, "redis": redis_partials(self.svc, self.job["id"]),
                "idle": self.idle}

    def stop(self) -> None:
        self.client.close()
        self.svc.stop()


def timed_beside(subject: Loop | ServiceRuns, services: list[ServiceRuns]) -> float:
    """``subject.timed()``, with the CPU the services not timed spent meanwhile (idle, they
    should spend next to none: the ratios would otherwise be skewed)."""
    idle = [service for service in services if service is not subject]
    before = [service.total_cpu() for service in idle]
    seconds = subject.timed()
    for service, cpu in zip(idle, before, strict=True):
        service.idle[0] += service.total_cpu() - cpu
        service.idle[1] += seconds
    return seconds


def rounds(loop: Loop, one: ServiceRuns, two: ServiceRuns, count: int,
           profile: Path | None) -> list[dict]:
    """``count`` rounds, each timing the loop, 1 worker and 2 workers once, in an order
    that turns from round to round (the VM's speed drifts within minutes; a ratio is taken
    within a round, between runs seconds apart). ``profile``: py-spy samples the 1-worker
    service's worker child over its timed runs."""
    subjects = {"loop": loop, "one": one, "two": two}
    spy = (start_profile(one.types["worker children"][0], profile) if profile else None)
    done = []
    try:
        for i in range(count):
            order = list(subjects)[i % 3:] + list(subjects)[:i % 3]
            done.append({name: timed_beside(subjects[name], [one, two]) for name in order})
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
    return done


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
    parser.add_argument("--quick", action="store_true", help="500 images, 1 round")
    parser.add_argument("--images", type=int, default=None, help="default 5000 (500 quick)")
    parser.add_argument("--chunk", type=int, default=125, help="chunk_images (default 125)")
    parser.add_argument("--rounds", type=int, default=None, help="default 5 (1 quick)")
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
    count = args.rounds or (1 if args.quick else 5)
    tmp = Path(tempfile.mkdtemp(prefix="convscope-bench-dataset-"))
    services: list[ServiceRuns] = []
    try:
        shapes = tmp / "shapes"
        subprocess.run([sys.executable, "-m", "service.cli", "datasets", "make-shapes", "--n",
                        str(n), "--out", str(shapes)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        os.environ["CONVSCOPE_DATASET_ROOTS"] = str(tmp)  # read by Service's environment
        files = sorted(shapes.glob("*.png"))
        loop = Loop(files, args.chunk)
        for workers in (1, 2):
            services.append(ServiceRuns(workers, tmp, shapes, args.chunk))
        done = rounds(loop, *services, count, args.profile)
        one, two = (service.summary() for service in services)
        report(n, args.chunk, files, loop, one, two, done)
        if args.profile:
            print(f"\nprofile of the worker child (1 worker), {args.profile}")
            print("\n".join("  " + line for line in profile_summary(args.profile)))
    finally:
        for service in services:
            service.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(n: int, chunk: int, files: list[Path], loop: Loop, one: dict, two: dict,
           done: list[dict]) -> None:
    from worker.settings import Settings

    chunks, runs = -(-n // chunk), len(done)
    seconds = statistics.median(loop.walls)
    print(f"top_examples, {MODEL} {LAYER} ({loop.channels} channels), k {K}, {n} images, "
          f"chunk_images {chunk} ({chunks} chunks; service default "
          f"{Settings.from_env().dataset_chunk_images}); {runs} round(s) of the loop, 1 and "
          f"2 workers in turn; TensorFlow threads per worker: "
          f"{os.environ.get('CONVSCOPE_TF_THREADS') or 'cores / workers'}")
    for i, times in enumerate(done):
        print(f"  round {i + 1}: " + ", ".join(f"{name} {t:.2f} s" for name, t in times.items())
              + f"; 1 worker {times['one'] / times['loop']:.2f}x the loop, 2 workers "
              f"{times['one'] / times['two']:.2f}x faster than 1")
    print(f"in-process loop: {seconds:.2f} s = {1000 * seconds / n:.2f} ms/image "
          f"({statistics.median(loop.cpus) / seconds:.2f} cores busy)")
    for name, run in (("1 worker", one), ("2 workers", two)):
        print(f"service, {name}: {run['seconds']:.2f} s = {1000 * run['seconds'] / n:.2f} "
              f"ms/image (folder registered in {run['ingest']:.1f} s); same top lists as "
              f"in-process: {'yes' if agree(loop.merged, run['job'], files) else 'NO'}")
        print_cpu(name, run, n, runs)
        spent, beside = run["idle"]
        print(f"  idle while the others ran: {1000 * spent / max(beside, 1e-9):.1f} ms of CPU "
              f"a second, all its processes")
    sizes, memory, used = two["redis"]
    kept = (f"{len(sizes)} left in Redis after the job, {int(statistics.median(memory))} bytes "
            "each by MEMORY USAGE" if sizes else "none left in Redis after the job")
    sizes_in, crops_in = loop.stored["partial_bytes"], loop.stored["patches"]
    print(f"chunk partials (chunks in turn, each pruned by the floors before it; "
          f"{loop.channels} channels, k {K}): the first {sizes_in[0]} bytes with "
          f"{crops_in[0]} crops, median {int(statistics.median(sizes_in))} bytes with "
          f"{int(statistics.median(crops_in))} crops, all {len(sizes_in)} together "
          f"{sum(sizes_in) / 2**20:.1f} MB; {kept}; Redis used_memory {used / 2**20:.1f} MB "
          f"after {runs + 3} jobs")
    values = {"two_vs_one_worker": statistics.median(t["one"] / t["two"] for t in done),
              "one_worker_vs_in_process": statistics.median(t["one"] / t["loop"]
                                                            for t in done)}
    print(f"\ntargets (the median of the {runs} rounds' ratios):")
    for name, target in TARGETS.items():
        at_most = name == "one_worker_vs_in_process"
        ok = values[name] <= target if at_most else values[name] >= target
        print(f"  {name:<26} {values[name]:6.2f}x  target {'<=' if at_most else '>='} "
              f"{target}x  {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
