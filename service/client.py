"""Python client for the convscope HTTP API (used by the CLI: one code path).

    client = Client("http://127.0.0.1:8000", api_key=None)
    job = client.submit(["cat.png"], model="shapes", kind="gradcam")
    job = client.wait(job)
    files = client.artifacts(job, out_dir="out/")

    # many images: multi-image jobs, a few in flight, outputs written per image
    for record in client.map(paths, model="shapes", kind="gradcam", out_dir="out/"):
        print(record["path"], record["status"], record["files"])
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from worker.contract import TERMINAL

TRANSIENT = (429, 502, 503, 504)
# A multi-image job refused for one of its images: its images are sent again one by one.
SPLIT_ON = ("invalid_image", "image_too_large", "payload_too_large")
JOB_TIMEOUT = 3600.0  # how long Client.map waits for one job to end
DOWNLOADS = 2  # bundles Client.map downloads while its in-flight jobs compute
POOL_SIZE = 32  # connections kept per host (Client.map's threads share the session)


def retry_policy(attempts: int = 4) -> Retry:
    """Transient answers (429, 502-504) and refused connections are retried, after the
    server's ``Retry-After`` when it sends one, else with jittered exponential backoff (at most
    10 s). POSTs are retried too: every job submission carries an ``Idempotency-Key``."""
    return Retry(total=attempts, connect=5, read=2, status=attempts, backoff_factor=0.5,
                 backoff_max=10.0, backoff_jitter=0.5, status_forcelist=TRANSIENT,
                 allowed_methods=None, respect_retry_after_header=True, raise_on_status=False)


class ApiError(RuntimeError):
    """A problem+json answer: ``status``, ``code`` and the server's ``detail``."""

    def __init__(self, status: int, code: str, detail: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail
        self.retry_after = retry_after  # seconds, from the Retry-After header (429, 503)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: not sent by convscope
        return None


def _sse(lines: Iterable[bytes]) -> Iterator[tuple[str, str]]:
    """``(event, data)`` per Server-Sent Event of ``lines`` (the WHATWG event-stream format:
    ``field: value`` lines, ``:`` comments, a blank line ends an event)."""
    event, data = "message", list[str]()
    for raw in lines:
        line = raw.decode("utf-8")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


@dataclass
class _MapRun:
    """One :meth:`Client.map` call: the job's fields, where outputs go, the in-flight slots."""

    job: dict[str, Any]
    out_dir: Path | None
    base: Path
    slots: threading.Semaphore
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    stop: threading.Event = field(default_factory=threading.Event)

    def key(self, paths: Sequence[str | Path]) -> str:
        """The chunk's Idempotency-Key: this run and the chunk's paths."""
        digest = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:32]
        return f"map-{self.run}-{digest}"

    def folder(self, path: str | Path) -> Path:
        """The output folder of one input: its path relative to ``base``, suffix kept."""
        return Path(os.path.relpath(os.path.abspath(path), self.base))


def _failure(exc: Exception) -> dict:
    """A job-like record for a submission that made no job."""
    code, detail = (exc.code, exc.detail) if isinstance(exc, ApiError) else \
        ("unreadable", str(exc))
    return {"id": None, "status": "failed", "error": {"code": code, "detail": detail}}


def _artifact_names(item: dict) -> list[tuple[str, str]]:
    """``(base name, the job's artifact name)`` per artifact of one item (``overlay`` and
    ``overlay.2`` for image 2 of a job: see ``worker/kinds.py``)."""
    names = item.get("artifacts") or {}
    return list(names.items()) if isinstance(names, dict) else [(n, n) for n in names]


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 timeout: float = 120.0, retry: Retry | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry if retry is not None else retry_policy(),
                              pool_maxsize=POOL_SIZE)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise ApiError(503, "unreachable", f"cannot reach {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            raise ApiError(resp.status_code, body.get("code", "error"),
                           body.get("detail", resp.text[:300]),
                           _seconds(resp.headers.get("Retry-After")))
        return resp

    # -- models ---------------------------------------------------------------------------
    def models(self, show_all: bool = False) -> list[dict]:
        params = {"all": "true"} if show_all else {}
        return self._request("GET", "/v1/models", params=params).json()["models"]

    def model(self, model_id: str, wait: float = 0) -> dict:
        return self._request("GET", f"/v1/models/{model_id}", params={"wait": wait}).json()

    def layers(self, model_id: str, wait: float = 60) -> list[dict]:
        return self._request("GET", f"/v1/models/{model_id}/layers",
                             params={"wait": wait}).json()["layers"]

    def upload_model(self, path: str | Path, name: str | None = None, preprocess: str = "raw",
                     wait: float = 60) -> dict:
        data = {"preprocess": preprocess, **({"name": name} if name else {})}
        with open(path, "rb") as fh:
            return self._request("POST", "/v1/models", params={"wait": wait}, data=data,
                                 files={"file": (Path(path).name, fh)}).json()

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, images: Sequence[str | Path] = (), *, model: str, kind: str,
               layer: str | None = None, options: dict | None = None,
               idempotency_key: str | None = None) -> dict:
        """Queue a job; returns ``{"id", "status"}``. A retried submission is the same job:
        it carries ``idempotency_key`` (default: a fresh random one)."""
        data = {"model": model, "kind": kind, "options": json.dumps(options or {})}
        if layer:
            data["layer"] = layer
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        handles = [open(p, "rb") for p in images]  # closed below
        try:
            files = [("image", (Path(p).name, fh)) for p, fh in zip(images, handles, strict=True)]
            return self._request("POST", "/v1/jobs", data=data, files=files,
                                 headers=headers).json()
        finally:
            for fh in handles:
                fh.close()

    def job(self, job_id: str, wait: float = 0) -> dict:
        return self._request("GET", f"/v1/jobs/{job_id}", params={"wait": wait}).json()

    def wait(self, job: dict | str, timeout: float = 600.0, poll: float = 20.0) -> dict:
        """Long-poll until the job ends (or ``timeout`` passes); returns the job.

        The server wakes a long-poll when the job's end is announced (pushed, not polled), so
        this returns within milliseconds of the end."""
        job_id = job if isinstance(job, str) else job["id"]
        deadline = time.monotonic() + timeout
        body = self.job(job_id)
        while body["status"] not in TERMINAL and time.monotonic() < deadline:
            body = self.job(job_id, wait=min(poll, max(0.1, deadline - time.monotonic())))
        return body

    def events(self, job_id: str) -> Iterator[dict]:
        """The job (as :meth:`job` returns it) at each change of its status or progress, from
        the Server-Sent Events of ``GET /v1/jobs/{id}/events``; ends after its end. Raises
        :class:`ApiError` on the first ``next()`` (404 also when the server has no events)."""
        with self._request("GET", f"/v1/jobs/{job_id}/events", stream=True,
                           headers={"Accept": "text/event-stream"}) as resp:
            for event, data in _sse(resp.iter_lines()):
                if event == "status":
                    job = json.loads(data)
                    yield job
                    if job["status"] in TERMINAL:
                        return

    def cancel(self, job_id: str) -> dict:
        return self._request("DELETE", f"/v1/jobs/{job_id}").json()

    def jobs(self, limit: int = 50) -> list[dict]:
        return self._request("GET", "/v1/jobs", params={"limit": limit}).json()["jobs"]

    def artifact(self, job_id: str, name: str) -> bytes:
        return self._request("GET", f"/v1/jobs/{job_id}/artifacts/{name}").content

    def artifacts(self, job: dict, out_dir: str | Path | None = None,
                  prefix: str = "") -> dict[str, bytes | Path]:
        """Every artifact of a finished job: bytes, or saved files when ``out_dir`` is given."""
        found: dict[str, bytes | Path] = {}
        for name in job.get("artifacts") or []:
            resp = self._request("GET", f"/v1/jobs/{job['id']}/artifacts/{name}")
            if out_dir is None:
                found[name] = resp.content
                continue
            ext = ".png" if resp.headers.get("Content-Type", "").startswith("image/png") else ".npy"
            data = resp.content
            path = Path(out_dir) / f"{prefix}{name}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            found[name] = path
        return found

    def contract(self) -> dict:
        """The server's shared names and limits (``GET /v1/contract``)."""
        return self._request("GET", "/v1/contract").json()

    # -- many images ----------------------------------------------------------------------
    def map(self, paths: Iterable[str | Path], *, model: str, kind: str,
            layer: str | None = None, options: dict | None = None,
            images_per_job: int | None = None, in_flight: int = 4,
            out_dir: str | Path | None = None,
            base: str | Path | None = None) -> Iterator[dict]:
        """Run many images as multi-image jobs; yield one record per path, as jobs end.

        Images are packed in input order into jobs of ``images_per_job`` (at most, and by
        default, the server's ``max_images_per_job``; one for single-image kinds). At most
        ``in_flight`` jobs are queued or running at once; a finished job's bundle
        (``artifacts.tar``) is downloaded while later jobs compute. Each submission carries an
        Idempotency-Key made of this run and the job's paths, so a retried POST (429, 502-504)
        never makes a second job. A job the server refuses for its input (an unreadable image)
        is sent again one image per job, so only the bad image fails.

        Record: ``{"path"`` (as given), ``"job"`` (id, None when no job was made), ``"index"``
        (the image's position in its job), ``"status"``, ``"item"`` (``result.items[index]``,
        None unless succeeded), ``"files"`` (paths written), and ``"error"`` unless it
        succeeded``}``. With ``out_dir``, image *p*'s outputs go to ``out_dir/<p relative to
        base>/``, its suffix kept (``a.png/`` and ``a.jpg/`` differ): ``item.json`` and each
        artifact as ``<name>.png`` / ``<name>.npy``. ``base`` defaults to the deepest folder
        holding every input. Stopping the iteration early sends no more jobs (it waits for
        those already sent).
        """
        paths = list(paths)
        if in_flight < 1:
            raise ValueError(f"in_flight={in_flight}: at least one job must be in flight")
        size = self._job_size(kind, images_per_job)
        folders = [os.path.abspath(Path(p).parent) for p in paths] or [os.getcwd()]
        run = _MapRun({"model": model, "kind": kind, "layer": layer, "options": options},
                      None if out_dir is None else Path(out_dir),
                      Path(os.path.abspath(base or os.path.commonpath(folders))),
                      threading.Semaphore(in_flight))
        outside = [p for p in paths if run.folder(p).parts[:1] == ("..",)]
        if out_dir is not None and outside:
            raise ValueError(f"{outside[0]} is not inside base {run.base}")
        chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
        return self._mapped(chunks, run, in_flight)

    def _job_size(self, kind: str, images_per_job: int | None) -> int:
        contract = self.contract()
        if kind in contract["imageless_kinds"]:
            raise ValueError(f"{kind} jobs take no image: nothing to map")
        if images_per_job is not None and images_per_job < 1:
            raise ValueError(f"images_per_job={images_per_job}: at least one image per job")
        size = 1 if kind in contract["single_image_kinds"] else contract["max_images_per_job"]
        return min(size, images_per_job or size)

    def _mapped(self, chunks: list[list], run: _MapRun, in_flight: int) -> Iterator[dict]:
        pool = ThreadPoolExecutor(max_workers=in_flight + DOWNLOADS,
                                  thread_name_prefix="convscope-map")
        futures = [pool.submit(self._map_chunk, chunk, run) for chunk in chunks]
        try:
            for future in as_completed(futures):
                yield from future.result()
        finally:  # done, or stopped early: send nothing more
            run.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _map_chunk(self, chunk: list, run: _MapRun) -> list[dict]:
        with run.slots:  # a slot is a job queued or running on the server
            if run.stop.is_set():
                return []
            finished = self._finish_chunk(chunk, run)
        return [record for job, paths in finished
                for record in self._records(job, paths, run)]

    def _finish_chunk(self, chunk: list, run: _MapRun) -> list[tuple[dict, list]]:
        """The chunk's ended job with its paths; or, when the server refuses the chunk for its
        input, a job per image (one after the other: the slot stays one job)."""
        try:
            return [(self._finish(chunk, run), chunk)]
        except (ApiError, OSError) as exc:
            if len(chunk) == 1 or (isinstance(exc, ApiError) and exc.code not in SPLIT_ON):
                return [(_failure(exc), chunk)]
        finished = []
        for path in chunk:
            try:
                finished.append((self._finish([path], run), [path]))
            except (ApiError, OSError) as exc:
                finished.append((_failure(exc), [path]))
        return finished

    def _finish(self, paths: list, run: _MapRun) -> dict:
        job = self.submit(paths, idempotency_key=run.key(paths), **run.job)
        return self.wait(job, timeout=JOB_TIMEOUT)

    def _records(self, job: dict, paths: list, run: _MapRun) -> list[dict]:
        ok = job["status"] == "succeeded"
        items = list((job.get("result") or {}).get("items") or []) if ok else []
        items += [None] * (len(paths) - len(items))
        try:
            files = self._save(job, paths, items, run) if ok and run.out_dir else {}
        except (ApiError, OSError, tarfile.TarError) as exc:  # bundle not fetched or written
            job, ok, files = {**job, **_failure(exc), "id": job["id"]}, False, {}
        records = []
        for index, (path, item) in enumerate(zip(paths, items, strict=True)):
            record = {"path": path, "job": job["id"], "index": index, "status": job["status"],
                      "item": item if ok else None, "files": files.get(index, [])}
            if not ok:
                record["error"] = job.get("error")
            records.append(record)
        return records

    def _save(self, job: dict, paths: list, items: list, run: _MapRun) -> dict[int, list[Path]]:
        """Write each image's item and artifacts to its folder, from the job's bundle."""
        assert run.out_dir is not None
        folders = [run.out_dir / run.folder(p) for p in paths]
        files: dict[int, list[Path]] = {i: [] for i in range(len(paths))}
        wanted = {}  # the job's artifact name -> (image index, base name)
        for i, (folder, item) in enumerate(zip(folders, items, strict=True)):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "item.json").write_text(json.dumps(item, indent=2))
            files[i].append(folder / "item.json")
            wanted.update({name: (i, base) for base, name in _artifact_names(item or {})})
        if not wanted:
            return files
        with self._request("GET", f"/v1/jobs/{job['id']}/artifacts.tar", stream=True) as resp:
            resp.raw.decode_content = True
            with tarfile.open(fileobj=resp.raw, mode="r|") as tar:
                for member in tar:
                    name, ext = os.path.splitext(member.name)
                    source = tar.extractfile(member) if name in wanted else None
                    if source is not None:
                        i, base = wanted[name]
                        path = folders[i] / f"{base}{ext}"
                        path.write_bytes(source.read())
                        files[i].append(path)
        return files

    def ready(self) -> bool:
        """Whether the service answers ready now (one request, no retries)."""
        try:
            return requests.get(self.url + "/readyz", timeout=5,
                                headers=self.session.headers).status_code == 200
        except requests.RequestException:
            return False
