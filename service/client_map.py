"""Many images through the API: :meth:`service.client.Client.map`'s machinery. Images are
packed into multi-image jobs, a bounded number in flight, and each finished job's bundle is
written per image while later jobs compute."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service import tar_stream
from service.api_error import ApiError

# A multi-image job refused for one of its images: its images are sent again one by one.
SPLIT_ON = ("invalid_image", "image_too_large", "payload_too_large")
JOB_TIMEOUT = 3600.0  # how long Client.map waits for one job to end
DOWNLOADS = 2  # bundles Client.map downloads while its in-flight jobs compute
# Input pixels of the first and last jobs by default (8 images of 224²): the first computes
# only once it is uploaded, and the last one's bundle downloads only once it is done; neither
# overlaps other work. Between them jobs double up to MAX_JOB_PIXELS (32 images of 224²): the
# engine computes a batch of 32 ResNet50 images 7-13 % faster than four batches of 8 (measured
# here side by side). Small images fill the server's maximum from the start.
JOB_PIXELS = 2**19
MAX_JOB_PIXELS = 2**21
DESCRIBE_WAIT = 60.0  # seconds Client.map waits for its model's description


def job_size(max_images: int, input_shape: Sequence[int | None] | None,
             pixels: int = JOB_PIXELS) -> int:
    """Images per job: the server's ``max_images`` for models whose input holds at most
    ``pixels / max_images`` pixels (or takes any size), else the largest power of two of
    images within ``pixels`` (a batch size the worker has traced), at least 1."""
    height, width = (list(input_shape or []) + [None, None])[:2]
    if not height or not width:
        return max_images
    fits = max(1, pixels // (height * width))
    return min(max_images, 1 << (fits.bit_length() - 1))


def job_sizes(n: int, first: int, most: int) -> list[int]:
    """Images per job for ``n`` images: ``first``, doubling up to ``most``, then ``most``;
    at the end halving back down (a power of two times ``first`` when ``first`` is one), so
    that the last job holds at most ``first`` images. ``[8, 16, 32, 8]`` for 64."""
    if most < 1:
        raise ValueError(f"at most {most} images per job: at least one is needed")
    first = min(max(1, first), most)
    sizes, size, left = [], first, n
    while left >= size + first:  # this job, with room left for a small last one
        sizes.append(size)
        left, size = left - size, min(2 * size, most)
    while left > first:
        part = max(first, 1 << ((left // 2).bit_length() - 1))
        sizes.append(part)
        left -= part
    return sizes + ([left] if left else [])


def pack(paths: Sequence[str | Path], sizes: Sequence[int], budget: int) -> list[list]:
    """``paths`` in jobs of ``sizes`` images, in order; a job whose files add up to more
    than ``budget`` bytes (0: no limit) is cut where its running total would pass it (a
    file larger than the budget goes alone; one that cannot be read counts 0, and its job
    is split when it is sent, so that it alone fails)."""
    jobs: list[list] = []
    start = 0
    for size in sizes:
        job: list = []
        total = 0
        for path in paths[start:start + size]:
            try:
                nbytes = os.path.getsize(path)
            except OSError:
                nbytes = 0
            if budget and job and total + nbytes > budget:
                jobs.append(job)
                job, total = [], 0
            job.append(path)
            total += nbytes
        jobs.append(job)
        start += size
    return [job for job in jobs if job]


class _Slots:
    """At most ``n`` jobs in flight, sent in input order: the server queues jobs in the order
    they arrive, and a semaphore (or uploads side by side) would let the small last job
    arrive before a large one, whose bundle then downloads last."""

    def __init__(self, n: int) -> None:
        self.free, self.next = n, 0
        self.cond = threading.Condition()

    @contextmanager
    def slot(self, ticket: int) -> Iterator[Callable[[], None]]:
        """Hold a slot once the jobs before this one (``ticket``: its place in input order,
        from 0) have been sent; yields ``sent()``, to call once the job is submitted (the
        next job may then be sent)."""
        with self.cond:
            self.cond.wait_for(lambda: self.next == ticket and self.free > 0)
            self.free -= 1

        def sent() -> None:
            with self.cond:
                self.next = max(self.next, ticket + 1)
                self.cond.notify_all()

        try:
            yield sent
        finally:
            sent()
            with self.cond:
                self.free += 1
                self.cond.notify_all()


@dataclass
class _MapRun:
    """One :meth:`Client.map` call: the job's fields, where outputs go, the in-flight slots."""

    job: dict[str, Any]
    out_dir: Path | None
    base: Path
    slots: _Slots
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    stop: threading.Event = field(default_factory=threading.Event)
    halted: bool = False  # set by MapRecords.stop (a plain flag: safe in a signal handler)

    def sending(self) -> bool:
        """Whether jobs may still be sent."""
        return not (self.halted or self.stop.is_set())

    def key(self, paths: Sequence[str | Path]) -> str:
        """The chunk's Idempotency-Key: this run and the chunk's paths."""
        digest = hashlib.sha256(b"\n".join(map(os.fsencode, paths))).hexdigest()[:32]
        return f"map-{self.run}-{digest}"

    def folder(self, path: str | Path) -> Path:
        """The output folder of one input: its path relative to ``base``, suffix kept."""
        return Path(os.path.relpath(os.path.abspath(path), self.base))


def _failure(exc: Exception) -> dict:
    """A job-like record for a submission that made no job."""
    code, detail = (exc.code, exc.detail) if isinstance(exc, ApiError) else \
        ("unreadable", str(exc))
    return {"id": None, "status": "failed", "error": {"code": code, "message": detail}}


def _artifact_names(item: dict) -> list[tuple[str, str]]:
    """``(base name, the job's artifact name)`` per artifact of one item (``overlay`` and
    ``overlay.2`` for image 2 of a job: see ``worker/kinds.py``)."""
    names = item.get("artifacts") or {}
    return list(names.items()) if isinstance(names, dict) else [(n, n) for n in names]


class MapRecords(Iterator[dict]):
    """What :meth:`Mapper.run` returns: one record per path, as jobs end. :meth:`stop` sends
    no more jobs: the records of the jobs already sent still come, then the iteration ends
    (a path never sent gets no record)."""

    def __init__(self, records: Generator[dict, None, None], run: _MapRun) -> None:
        self._records, self._run = records, run

    def __next__(self) -> dict:
        return next(self._records)

    def stop(self) -> None:
        """Send no more jobs (safe to call from a signal handler: it takes no lock)."""
        self._run.halted = True

    def close(self) -> None:
        """Send no more jobs and wait for those already sent, unrecorded."""
        self._records.close()


def map_images(client: Any, paths: Iterable[str | Path], **kwargs: Any) -> MapRecords:
    """:meth:`Mapper.run` with ``client`` (a :class:`service.client.Client`)."""
    return Mapper(client).run(paths, **kwargs)


class Mapper:
    def __init__(self, client: Any) -> None:
        self.client = client  # a service.client.Client (not imported: it imports this)

    def run(self, paths: Iterable[str | Path], *, model: str, kind: str,
            layer: str | None = None, options: dict | None = None,
            images_per_job: int | None = None, in_flight: int = 4,
            out_dir: str | Path | None = None,
            base: str | Path | None = None) -> MapRecords:
        """Run many images as multi-image jobs; yield one record per path, as jobs end.

        Images are packed in input order into jobs of ``images_per_job`` (at most the
        server's ``max_images_per_job``; one for single-image kinds). By default that
        maximum, or for large inputs jobs that grow and shrink again (:func:`job_sizes`: 8,
        16, 32, 32, ..., 8 images of 224²), each job's files within half the server's
        request limit. At most
        ``in_flight`` jobs are queued or running at once; a finished job's bundle
        (``artifacts.tar``) is downloaded while later jobs compute. Each submission carries an
        Idempotency-Key made of this run and the job's paths, so a retried POST (429, 502-504)
        never makes a second job. A job the server refuses for its input (an unreadable image)
        is sent again one image per job, so only the bad image fails.

        Record: ``{"path"`` (as given), ``"job"`` (id, None when no job was made), ``"index"``
        (the image's position in its job), ``"status"``, ``"item"`` (``result.items[index]``,
        None unless succeeded), ``"files"`` (paths written), and ``"error"`` unless it
        succeeded (``{"code", "message"}``, as a failed job's, also when no job was
        made)``}``. With ``out_dir``, image *p*'s outputs go to ``out_dir/<p relative to
        base>/``, its suffix kept (``a.png/`` and ``a.jpg/`` differ): ``item.json`` and each
        artifact as ``<name>.png`` / ``<name>.npy``. ``base`` defaults to the deepest folder
        holding every input. ``stop()`` on what this returns sends no more jobs and still
        yields the records of those already sent (``convscope batch``'s first Ctrl-C);
        ``close()`` sends no more jobs and waits for those already sent, unrecorded; an
        exception raised while waiting for the next record (``KeyboardInterrupt``) does not
        wait for them here.
        """
        paths = list(paths)
        if in_flight < 1:
            raise ValueError(f"in_flight={in_flight}: at least one job must be in flight")
        sizes, budget = self._job_sizes(paths, model, kind, images_per_job)
        folders = [os.path.abspath(Path(p).parent) for p in paths] or [os.getcwd()]
        run = _MapRun({"model": model, "kind": kind, "layer": layer, "options": options},
                      None if out_dir is None else Path(out_dir),
                      Path(os.path.abspath(base or os.path.commonpath(folders))),
                      _Slots(in_flight))
        outside = [p for p in paths if run.folder(p).parts[:1] == ("..",)]
        if out_dir is not None and outside:
            raise ValueError(f"{outside[0]} is not inside base {run.base}")
        return MapRecords(self._mapped(pack(paths, sizes, budget), run, in_flight), run)

    def _job_sizes(self, paths: list, model: str, kind: str,
                   images_per_job: int | None) -> tuple[list[int], int]:
        """Images per job, in order (``images_per_job`` each when given, else
        :func:`job_sizes` for the model's input), and the bytes a job's files may hold (half
        the server's request limit; 0 when it does not say, or with ``images_per_job``)."""
        contract = self.client.contract()
        if kind in contract["imageless_kinds"]:
            raise ValueError(f"{kind} jobs take no image: nothing to map")
        if images_per_job is not None and images_per_job < 1:
            raise ValueError(f"images_per_job={images_per_job}: at least one image per job")
        most = 1 if kind in contract["single_image_kinds"] else contract["max_images_per_job"]
        if images_per_job is not None:
            size = min(most, images_per_job)
            return [min(size, len(paths) - i) for i in range(0, len(paths), size)], 0
        if not paths:
            return [], 0
        try:  # an unknown model fails each job with the server's own error
            # described first (a worker loads it; its jobs would wait for that anyway): a
            # built-in model no worker has used yet has no input shape until then
            shape = self.client.model(model, wait=DESCRIBE_WAIT).get("input_shape")
        except (ApiError, OSError):  # OSError: no answer (TransportError), a timeout among them
            shape = None
        largest = job_size(most, shape, MAX_JOB_PIXELS)
        # room for the multipart framing
        return job_sizes(len(paths), job_size(most, shape), largest), \
            contract.get("max_content_length", 0) // 2

    def _mapped(self, chunks: list[list], run: _MapRun,
                in_flight: int) -> Generator[dict, None, None]:
        pool = ThreadPoolExecutor(max_workers=in_flight + DOWNLOADS,
                                  thread_name_prefix="convscope-map")
        # the pool starts chunks in order, so the chunks started hold the first tickets
        futures = [pool.submit(self._map_chunk, chunk, run, i) for i, chunk in enumerate(chunks)]
        wait = True
        try:
            for future in as_completed(futures):
                yield from future.result()
        except KeyboardInterrupt:  # Ctrl-C: no waiting here for the jobs in flight
            wait = False
            raise
        finally:  # done, or stopped early: send nothing more
            run.stop.set()
            pool.shutdown(wait=wait, cancel_futures=True)

    def _map_chunk(self, chunk: list, run: _MapRun, ticket: int) -> list[dict]:
        with run.slots.slot(ticket) as sent:  # a slot is a job queued or running
            if not run.sending():
                return []
            finished = self._finish_chunk(chunk, run, sent)
        return [record for job, paths in finished
                for record in self._records(job, paths, run)]

    def _finish_chunk(self, chunk: list, run: _MapRun,
                      sent: Callable[[], None]) -> list[tuple[dict, list]]:
        """The chunk's ended job with its paths; or, when the server refuses the chunk for its
        input, a job per image (one after the other: the slot stays one job; these go after
        any later chunk already sent)."""
        try:
            job = self._submit(chunk, run, sent)
        except (ApiError, OSError) as exc:
            if len(chunk) == 1 or (isinstance(exc, ApiError) and exc.code not in SPLIT_ON):
                return [(_failure(exc), chunk)]
        else:
            return [(self._wait(job), chunk)]
        finished = []
        for path in chunk:
            if not run.sending():  # stopped: the rest of the chunk is not sent
                break
            try:
                finished.append((self._wait(self._submit([path], run, sent)), [path]))
            except (ApiError, OSError) as exc:
                finished.append((_failure(exc), [path]))
        return finished

    def _submit(self, paths: list, run: _MapRun, sent: Callable[[], None]) -> dict:
        try:
            return self.client.submit(paths, idempotency_key=run.key(paths), **run.job)
        finally:
            sent()

    def _wait(self, job: dict) -> dict:
        """The job once it ended; if it cannot be read (the service gone, a timeout), the
        job as failed with that error: it was made, so its images are not sent again."""
        try:
            return self.client.wait(job, timeout=JOB_TIMEOUT)
        except ApiError as exc:
            return {**job, **_failure(exc), "id": job["id"]}
        except OSError as exc:  # no answer (TransportError), a timeout among them
            return {**job, "status": "failed",
                    "error": {"code": "service_unavailable", "message": str(exc)}}

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
            # compact: C's encoder (indented, json.dumps takes its pure-Python path: a tenth
            # of `convscope batch`'s CPU over 2,000 small images)
            (folder / "item.json").write_text(json.dumps(item) + "\n")
            files[i].append(folder / "item.json")
            wanted.update({name: (i, base) for base, name in _artifact_names(item or {})})
        if not wanted:
            return files
        bundle = f"/v1/jobs/{job['id']}/artifacts.tar"
        with self.client._request("GET", bundle, stream=True) as resp:
            for member, data in tar_stream.members(resp.raw):
                name, ext = os.path.splitext(member)
                if name in wanted:
                    i, base = wanted[name]
                    path = folders[i] / f"{base}{ext}"
                    path.write_bytes(data)
                    files[i].append(path)
            resp.raw.read()  # the end-of-archive blocks: the connection is kept alive
        return files
