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

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from service.api_error import ApiError, is_api_url
from service.client_map import MapRecords, map_images
from service.http_client import (
    TRANSIENT,
    Response,
    Retry,
    Session,
    TransportError,
    retry_after,
)
from worker.contract import TERMINAL

__all__ = ["TRANSIENT", "ApiError", "Client", "retry_policy"]

POOL_SIZE = 32  # connections kept per host (Client.map's threads share the session)
MIN_POLL = 0.1  # the shortest long-poll Client.wait asks for (the server wakes it at the end)
POLL_MARGIN = 1.0  # seconds a long-poll ends before the client's timeout (the answer's trip)


def retry_policy(attempts: int = 4) -> Retry:
    """Transient answers (429, 502-504) and refused connections are retried, after the
    server's ``Retry-After`` when it sends one, else with jittered exponential backoff (at most
    10 s). POSTs are retried too: every job submission carries an ``Idempotency-Key``."""
    return Retry(total=attempts, connect=5, read=2, status=attempts, backoff_factor=0.5,
                 backoff_max=10.0, backoff_jitter=0.5)


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


def _job_id(job: dict | str) -> str:
    """The id of a job given as its id or as the job a call returned."""
    if isinstance(job, str) and job:
        return job
    if isinstance(job, dict) and isinstance(job.get("id"), str) and job["id"]:
        return job["id"]
    raise TypeError(f"a job id or a job as the API returns it (with its 'id'), not {job!r:.80}")


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 timeout: float = 120.0, retry: Retry | None = None) -> None:
        if not is_api_url(url):
            raise ValueError(f"not an http(s) URL of the API: {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = Session(self.url, timeout, retry if retry is not None else retry_policy(),
                               POOL_SIZE, {"Authorization": f"Bearer {api_key}"} if api_key
                               else {})

    def close(self) -> None:
        """Close the connections kept alive for later calls."""
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Response:
        try:
            resp = self.session.request(method, path, **kwargs)
        except TransportError as exc:
            if isinstance(exc.__cause__, TimeoutError) and not exc.connect:
                raise  # connected, and no answer in time: as it is
            raise ApiError(503, "unreachable", f"cannot reach {self.url}: {exc}") from exc
        if 300 <= resp.status_code < 400:  # not followed: a POST would lose its body
            resp.close()
            raise ApiError(resp.status_code, "redirected", f"{self.url}{path} answered "
                           f"{resp.status_code}, moved to {resp.headers.get('Location')!r}: "
                           "give the API's own address (--url / CONVSCOPE_URL)")
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except TransportError:  # a proxy's error page
                body = {}
            body = body if isinstance(body, dict) else {}
            raise ApiError(resp.status_code, body.get("code", "error"),
                           body.get("detail", resp.text[:300]),
                           retry_after(resp.headers.get("Retry-After")))
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

    # -- datasets -------------------------------------------------------------------------
    def datasets(self) -> list[dict]:
        return self._request("GET", "/v1/datasets").json()["datasets"]

    def dataset(self, dataset_id: str, wait: float = 0) -> dict:
        return self._request("GET", f"/v1/datasets/{dataset_id}", params={"wait": wait}).json()

    def upload_dataset(self, path: str | Path, name: str | None = None,
                       wait: float = 60) -> dict:
        """Upload a .zip / .tar(.gz) of images; returns the dataset (``processing`` if a
        worker is still reading it after ``wait`` seconds)."""
        data = {"name": name} if name else {}
        with open(path, "rb") as fh:
            return self._request("POST", "/v1/datasets", params={"wait": wait}, data=data,
                                 files={"file": (Path(path).name, fh)}).json()

    def register_dataset(self, server_path: str, name: str | None = None,
                         wait: float = 60) -> dict:
        """Register a folder on the server (inside its ``CONVSCOPE_DATASET_ROOTS``)."""
        fields = {"path": server_path, **({"name": name} if name else {})}
        return self._request("POST", "/v1/datasets", params={"wait": wait},  # as multipart
                             files={k: (None, v) for k, v in fields.items()}).json()

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, images: Sequence[str | Path] = (), *, model: str, kind: str,
               layer: str | None = None, options: dict | None = None,
               idempotency_key: str | None = None, dataset: str | None = None) -> dict:
        """Queue a job; returns ``{"id", "status"}``. A retried submission is the same job:
        it carries ``idempotency_key`` (default: a fresh random one). ``dataset``: the id of
        one of your datasets instead of ``images`` (kind ``top_examples``)."""
        data = {"model": model, "kind": kind, "options": json.dumps(options or {})}
        if layer:
            data["layer"] = layer
        if dataset:
            data["dataset"] = dataset
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
        if not poll >= MIN_POLL:
            raise ValueError(f"poll must be at least {MIN_POLL} s, not {poll!r}")
        job_id = _job_id(job)
        deadline = time.monotonic() + timeout
        # each long-poll answered before the client's own read timeout gives up on it
        if self.timeout is not None:
            poll = max(MIN_POLL, min(poll, max(self.timeout - POLL_MARGIN, self.timeout / 2)))
        # the first request already long-polls: an ended job answers at once, a running one
        # when it ends (no separate read of the job first)
        body = self.job(job_id, wait=min(poll, max(0.0, timeout)))
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
            base: str | Path | None = None) -> MapRecords:
        """Run many images as multi-image jobs; yield one record per path, as jobs end
        (see :meth:`service.client_map.Mapper.run`; ``stop()`` sends no more jobs)."""
        if isinstance(paths, (str, Path)):  # one path: not a sequence of its characters
            raise TypeError("paths: a list of image paths, not one path (wrap it: [path])")
        return map_images(self, paths, model=model, kind=kind, layer=layer, options=options,
                          images_per_job=images_per_job, in_flight=in_flight,
                          out_dir=out_dir, base=base)

    def ready(self) -> bool:
        """Whether the service answers ready now (one request, no retries)."""
        once = Session(self.url, 5.0, Retry(total=0), 1, self.session.headers)
        try:
            return once.request("GET", "/readyz").status_code == 200
        except TransportError:
            return False
        finally:
            once.close()
