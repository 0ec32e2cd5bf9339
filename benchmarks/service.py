"""The service against its own engine and against tf-keras-vis, side by side in one run.

``make bench-service`` (or ``python benchmarks/service.py [--quick]``). Every figure is a
ratio measured in this run, on this machine, each rate the median of three measurements (the
VM is shared: one engine figure moved by up to 40 % within an hour):

- the in-process engine: Grad-CAM on the ``shapes`` CNN at batch 32, bare and with the PNG
  rendering the service does (heatmap NPY, heatmap PNG, overlay);
- tf-keras-vis in-process Grad-CAM on the course CIFAR CNN (what a user with a folder of
  images would run in a notebook instead);
- ``convscope up`` with 1 worker process (and 2, for scaling): one job at a time through
  ``POST /v1/jobs?wait``; 16 clients sending single-image jobs; ``convscope batch`` over a
  folder (CIFAR CNN, every artifact on disk; ResNet50 with ``weights=None`` at 224²); an
  identical filters job repeated and an overlapping one; the API's and the worker's memory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Before anything imports TensorFlow (the references here, and benchmarks/dataset.py's): the
# kernels every convscope process computes with (models/__init__.py).
import models  # noqa: E402,F401

JOB_IMAGES = 32  # CONVSCOPE_MAX_IMAGES_PER_JOB of the benchmarked service
TARGETS = {"latency_p50_ms": 20.0, "concurrent_vs_engine": 0.10, "batch_cifar_vs_tkv": 1.0,
           "batch_resnet_vs_engine": 0.8, "filters_repeat_ms": 50.0, "api_rss_mb": 150.0,
           "worker_rss_growth": 0.05}


# -- in-process references ----------------------------------------------------------------
def engine_rates(model, layer: str, images: np.ndarray, batch: int = 32,
                 rendered: bool = True, preprocess: str = "raw") -> tuple[float, float]:
    """Images/s of the engine's Grad-CAM at ``batch``, bare and with the service's rendering
    (0.0 unless ``rendered``), with the model's own input ``preprocess`` (the service's job
    computes it too: ResNet50's ``caffe`` is about 5 % of its Grad-CAM)."""
    from models import render
    from models.cam import make_cam
    from worker.npy import npy_bytes

    cam = make_cam("gradcam", model, layer, preprocess)
    chunks = [images[i:i + batch] for i in range(0, len(images), batch)]
    cam(chunks[0])  # trace
    start = time.perf_counter()
    for chunk in chunks:
        cam(chunk)
    bare = len(images) / (time.perf_counter() - start)
    if not rendered:
        return bare, 0.0
    start = time.perf_counter()
    for chunk in chunks:
        for image, heat in zip(chunk, cam(chunk).heatmaps, strict=True):
            npy_bytes(heat)
            render.to_png(render.heatmap_image(heat))
            render.to_png(render.overlay(image, heat))
    return bare, len(images) / (time.perf_counter() - start)


def tkv_rate(model, layer: str, images: np.ndarray, batch: int = 64) -> float:
    """Images/s of tf-keras-vis Grad-CAM in-process (top class of each image)."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)

    def run(chunk: np.ndarray) -> np.ndarray:
        classes = np.argmax(model.predict(chunk, verbose=0), axis=-1)
        return gradcam(CategoricalScore(list(classes)), chunk, penultimate_layer=layer,
                       seek_penultimate_conv_layer=False)

    run(images[:batch])
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        run(images[i:i + batch])
    return len(images) / (time.perf_counter() - start)


# -- the service --------------------------------------------------------------------------
class Service:
    """``convscope up`` on a free port with a data dir of its own (the trained shapes
    model copied in), rate limit off."""

    def __init__(self, workers: int, folder: Path) -> None:
        from service.launcher import free_port

        self.folder = folder
        (folder / "models").mkdir(parents=True, exist_ok=True)
        for item in (ROOT / "data" / "models").glob("shapes-v1*"):
            shutil.copy(item, folder / "models" / item.name)
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "CONVSCOPE_DATA_DIR": str(folder), "CONVSCOPE_RATE_LIMIT": "off",
               "CONVSCOPE_MAX_IMAGES_PER_JOB": str(JOB_IMAGES), "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("CONVSCOPE_REDIS_URL", None)
        self.log = (folder / "up.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "up", "--port", self.url.rsplit(":", 1)[1],
             "--workers", str(workers)], env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=folder)
        deadline = time.monotonic() + 600
        while b"convscope is ready" not in (folder / "up.log").read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"convscope up did not start; see {folder / 'up.log'}")
            time.sleep(0.5)

    def worker_rss(self) -> float:
        """MB resident in the worker processes (main and children) together."""
        return rss_mb(self.pids("celery"))

    def stop(self) -> None:
        from service.launcher import stop

        stop(self.proc)

    def pids(self, needle: str) -> list[int]:
        """The processes under ``convscope up`` whose command line holds ``needle``."""
        tree, found = {self.proc.pid}, []
        for _ in range(4):  # up → gunicorn/celery → their workers/children
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(line.split(":\t", 1) for line in
                                  status.read_text().splitlines() if ":\t" in line)
                except OSError:
                    continue
                if int(fields.get("PPid", "0")) in tree:
                    tree.add(int(status.parent.name))
        for pid in tree:
            try:
                if needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        return found


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def post_job(session: requests.Session, url: str, image: bytes, model: str = "shapes",
             kind: str = "gradcam", wait: float = 60) -> dict:
    res = session.post(f"{url}/v1/jobs?wait={wait}", files={"image": ("i.png", image)},
                       data={"model": model, "kind": kind})
    job = res.json()
    if job.get("status") != "succeeded":
        raise RuntimeError(f"job did not succeed: {res.text[:300]}")
    return job


def latency(url: str, image: bytes, n: int) -> tuple[float, float]:
    session = requests.Session()
    for _ in range(5):
        post_job(session, url, image)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        post_job(session, url, image)
        times.append(time.perf_counter() - start)
    times.sort()
    return 1000 * statistics.median(times), 1000 * times[int(0.95 * (len(times) - 1))]


def multipart_body(fields: dict[str, str], image: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``fields`` and one ``image`` file, with its type."""
    boundary = f"----convscope{uuid.uuid4().hex}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
             .encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                 f'filename="i.png"\r\nContent-Type: image/png\r\n\r\n'.encode() + image +
                 f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def concurrent_rate(url: str, image: bytes, n: int, clients: int = 16) -> tuple[float, float]:
    """(jobs/s, the clients' own CPU ms per job) of ``clients`` threads each sending
    single-image Grad-CAM jobs (``POST ?wait``) one after the other on a kept-alive
    connection. The clients are lean (``http.client``, the body built once): they share the
    service's 2 cores, and ``requests`` cost 1.2-1.8 ms of CPU per job, a sixth of the
    service's own; a real service's clients run on other machines."""
    host, port = url.rsplit("/", 1)[1].split(":")
    body, ctype = multipart_body({"model": "shapes", "kind": "gradcam"}, image)
    local = threading.local()

    def one(_: int) -> None:
        conn = getattr(local, "conn", None) or http.client.HTTPConnection(host, int(port))
        local.conn = conn
        conn.request("POST", "/v1/jobs?wait=60", body=body, headers={"Content-Type": ctype})
        res = conn.getresponse()
        text = res.read()
        if res.status != 200 or b'"succeeded"' not in text:
            raise RuntimeError(f"job did not succeed: {res.status} {text[:300]!r}")

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients * 4)))
        cpu, start = time.process_time(), time.perf_counter()
        list(pool.map(one, range(n)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return n / seconds, 1000 * cpu / n


def clients(url: str, image: bytes, n: int, cpu: list[float], rss: list[float],
            workers: Callable[[], float]) -> float:
    """:func:`concurrent_rate`'s jobs/s; its clients' CPU per job is appended to ``cpu``, the
    workers' RSS after it (``workers()``) to ``rss``."""
    rate, per_job = concurrent_rate(url, image, n)
    cpu.append(per_job)
    rss.append(workers())
    return rate


def write_images(folder: Path, n: int, size: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"img{i:05d}.png")
    return folder


def batch_rate(url: str, folder: Path, out: Path, model: str, runs: int = 3,
               reference: Callable[[], float] | None = None) -> tuple[float, float]:
    """(images/s, ratio) of ``convscope batch`` over ``folder``, every artifact written to
    ``out``: the medians of ``runs`` runs, each ratio against ``reference()`` (a rate
    measured just before the run; 1.0 without one). First a warm-up batch over a copy of two
    jobs' worth of images, so the worker has loaded the model and traced its batch shapes
    (one job, two merged; for 224² inputs the 64 images go as jobs of 8, 16, 32 and 8, as
    in each timed run), as the engine figure has (timed after a first call at its batch
    size)."""
    n = len(list(folder.iterdir()))
    warm = folder.parent / f"{folder.name}-warm"
    warm.mkdir(exist_ok=True)
    for path in sorted(folder.iterdir())[:2 * JOB_IMAGES]:  # a merged batch of two jobs
        shutil.copy(path, warm / path.name)
    subprocess.run([sys.executable, "-m", "service.cli", "batch", str(warm), "--model", model,
                    "--kind", "gradcam", "--out", str(out.parent / f"{out.name}-warm"),
                    "--url", url], capture_output=True, cwd=ROOT, check=True)
    def once() -> float:
        target = out.parent / f"{out.name}-{uuid.uuid4().hex[:8]}"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "service.cli", "batch", str(folder),
                               "--model", model, "--kind", "gradcam", "--out", str(target),
                               "--url", url], capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        if done.returncode != 0 or f"{n} done" not in done.stdout:
            raise RuntimeError(f"batch failed: {done.stdout[-500:]} {done.stderr[-2000:]}")
        shutil.rmtree(target, ignore_errors=True)
        return n / seconds

    # The median of several runs: this 2-vCPU VM is shared, and one measurement of the same
    # in-process engine moved by up to 40 % within an hour (every figure here is a median),
    # so each run is compared with its reference measured just before it.
    return paired(once, reference or (lambda: 1.0), runs)


# Seconds the machine rests before each measurement of a pair. Measured here: the same
# ResNet50 ``convscope batch`` took 5.0-6.0 s when started after 3 s idle and 5.3-8.6 s when
# started right after the in-process engine's run (its /proc/stat showed the hypervisor's
# steal time and system time up in the slow runs), so both sides of a pair start rested.
REST = 2.0


def paired(measure: Callable[[], float], reference: Callable[[], float],
           runs: int = 3) -> tuple[float, float]:
    """(median of ``measure()``, median of ``measure() / reference()``) over ``runs`` pairs,
    the reference measured just before each measurement (the VM's speed drifts), each after
    :data:`REST` seconds idle."""
    rates, ratios = [], []
    for _ in range(runs):
        time.sleep(REST)
        ref = reference()
        time.sleep(REST)
        rates.append(measure())
        ratios.append(rates[-1] / ref)
    return statistics.median(rates), statistics.median(ratios)


def filters_repeat(url: str) -> tuple[float, float, float]:
    """(first, identical repeat, overlapping 0-15 after 0-7) end-to-end seconds."""
    session = requests.Session()

    def run(filters: list[int]) -> float:
        options = json.dumps({"filters": filters, "steps": 64, "seed": 1})
        start = time.perf_counter()
        res = session.post(f"{url}/v1/jobs?wait=120", data={
            "model": "shapes", "kind": "filters", "layer": "conv4", "options": options})
        if res.json().get("status") != "succeeded":
            raise RuntimeError(res.text[:300])
        return time.perf_counter() - start

    return run(list(range(8))), run(list(range(8))), run(list(range(16)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and images")
    args = parser.parse_args()
    import keras

    from models.cifar_cnn import build_cifar_cnn
    from models.zoo import load_builtin

    q = args.quick
    tmp = Path(tempfile.mkdtemp(prefix="convscope-bench-"))
    shapes = keras.saving.load_model(ROOT / "data" / "models" / "shapes-v1.keras", compile=False)
    rng = np.random.default_rng(0)
    shapes_imgs = rng.integers(0, 256, (1024, 64, 64, 3)).astype(np.float32)
    shapes_rates = [engine_rates(shapes, "conv4", shapes_imgs) for _ in range(3)]
    engine_bare = statistics.median(r[0] for r in shapes_rates)
    engine_rendered = statistics.median(r[1] for r in shapes_rates)
    cifar = build_cifar_cnn()
    cifar_imgs = rng.integers(0, 256, (2000, 32, 32, 3)).astype(np.float32)
    tkv = tkv_rate(cifar, "conv4", cifar_imgs)
    resnet_loaded = load_builtin("resnet50", tmp)
    resnet = resnet_loaded.model
    resnet_imgs = rng.integers(0, 256, (16 if q else 64, 224, 224, 3)).astype(np.float32)

    def shapes_engine() -> float:
        return engine_rates(shapes, "conv4", shapes_imgs, rendered=False)[0]

    def resnet_engine_rate() -> float:
        return engine_rates(resnet, "conv5_block3_out", resnet_imgs, batch=32, rendered=False,
                            preprocess=resnet_loaded.info.preprocess)[0]

    resnet_engine = statistics.median(resnet_engine_rate() for _ in range(3))
    print(f"in-process engine, shapes Grad-CAM batch 32: {engine_bare:.0f} img/s "
          f"({engine_rendered:.0f} img/s with the service's PNG rendering)")
    print(f"tf-keras-vis in-process, CIFAR CNN: {tkv:.0f} img/s; engine ResNet50: "
          f"{resnet_engine:.1f} img/s")
    star = (ROOT / "service/static/samples/star.png").read_bytes()
    results: dict[str, float] = {}
    for workers in (1, 2):
        svc = Service(workers, tmp / f"up{workers}")
        try:
            p50, p95 = latency(svc.url, star, 30 if q else 100)
            # the shapes model loaded, its Grad-CAM traced for one image at a time
            worker_before = svc.worker_rss()
            client_cpu: list[float] = []
            rss: list[float] = []  # the workers' after each run
            # each run against the engine measured just before it (the service idle)
            rate, ratio = paired(partial(clients, svc.url, star, 200 if q else 700, client_cpu,
                                         rss, svc.worker_rss), shapes_engine)
            worker_after = rss[-1]
            api = max(rss_mb([p]) for p in svc.pids("gunicorn"))
            print(f"\n{workers} worker(s): one job at a time p50 {p50:.1f} ms, p95 {p95:.1f} ms;"
                  f" 16 clients {rate:.1f} jobs/s = {ratio:.3f} of the engine (median of "
                  f"3 runs, each against the engine just before it; the clients used "
                  f"{statistics.median(client_cpu):.2f} ms CPU per job)")
            if workers == 1:
                n = 400 if q else 2000
                folder = write_images(tmp / "cifar", n, 32, 1)
                cifar_rate, cifar_ratio = batch_rate(svc.url, folder, tmp / "out-cifar",
                                                     "cifar10", reference=lambda: tkv_rate(
                                                         cifar, "conv4", cifar_imgs))
                folder = write_images(tmp / "resnet", len(resnet_imgs), 224, 2)
                resnet_rate, resnet_ratio = batch_rate(svc.url, folder, tmp / "out-resnet",
                                                       "resnet50", reference=resnet_engine_rate)
                first, repeat, overlap = filters_repeat(svc.url)
                print(f"convscope batch, CIFAR CNN, {n} images: {cifar_rate:.0f} img/s = "
                      f"{cifar_ratio:.2f}x tf-keras-vis in-process")
                print(f"convscope batch, ResNet50, {len(resnet_imgs)} images: "
                      f"{resnet_rate:.1f} img/s = {resnet_ratio:.2f}x the engine")
                print(f"filters 8x64 steps: first {1000 * first:.0f} ms, identical repeat "
                      f"{1000 * repeat:.0f} ms, 0-15 after 0-7 {1000 * overlap:.0f} ms")
                print(f"memory: largest API process {api:.0f} MB after the jobs above; "
                      f"workers {worker_before:.0f} -> {worker_after:.0f} MB over the 16-client "
                      f"jobs ({100 * (worker_after / worker_before - 1):+.1f} %; "
                      f"{100 * (rss[0] / worker_before - 1):+.1f} % in the first run, the "
                      f"first to compute each batch size it gathered, "
                      f"{100 * (worker_after / rss[0] - 1):+.1f} % in the next two)")
                results.update(latency_p50_ms=p50, concurrent_vs_engine=ratio,
                               batch_cifar_vs_tkv=cifar_ratio,
                               batch_resnet_vs_engine=resnet_ratio,
                               filters_repeat_ms=1000 * repeat, api_rss_mb=api,
                               worker_rss_growth=worker_after / worker_before - 1)
        finally:
            svc.stop()
    print("\ntargets:")
    for name, target in TARGETS.items():
        value = results[name]
        at_most = name.endswith(("_ms", "_mb", "_growth"))
        ok = value <= target if at_most else value >= target
        print(f"  {name:<26} {value:8.3f}  target {'<=' if at_most else '>='} "
              f"{target}  {'met' if ok else 'MISSED'}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
