"""``convscope batch``: a folder of images through :meth:`Client.map`, resumable.

Images are packed into multi-image jobs (``images_per_job``, by default the server's
``max_images_per_job``, fewer in the first and last jobs for large inputs) with at most
``concurrency`` jobs queued or running at once; each finished job's bundle is written while
later jobs compute. Every input gets its own output folder, its path relative to SOURCE with
its suffix kept: ``a.png`` → ``OUT/a.png/``, ``a.jpg`` → ``OUT/a.jpg/``, ``sub/b.png`` →
``OUT/sub/b.png/`` (for a glob, relative to the folder before its first wildcard). A folder
SOURCE is searched recursively, leaving out OUT.

Progress is kept in ``OUT/results.jsonl`` (one line per finished image, appended as soon as
it is done, knowing the image by its path under SOURCE): a second run skips every image that
succeeded there, however SOURCE is spelled, so an interrupted batch resumes without doing any
image twice (failed images are tried again). A first Ctrl-C sends no more jobs and records
those in flight as they end; a second quits at once (those jobs' images go again).
Transient failures (connection errors, 429/502-504) are retried by the client's session
(``service.http_client``), after the server's Retry-After, else with backoff; every job
carries an Idempotency-Key, so a retry never makes a second job.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from service.client import Client
from service.client_map import MapRecords

RATE_RETRIES = 60  # transient answers (429 after Retry-After) one request may wait out
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SUMMARY_FIELDS = ["image", "job", "status", "top_index", "top_label", "top_score", "error"]


def source_base(source: str) -> Path:
    """The folder output folders are relative to: SOURCE itself, or a glob's folder before
    its first wildcard (``photos/*.jpg`` → ``photos``)."""
    path = Path(source)
    if path.is_dir():
        return path
    fixed = []
    for part in path.parts[:-1]:
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


RUN_KEYS = ("model", "kind", "layer", "options")  # what a resumed batch must ask for again


def find_images(source: str, exclude: Path | None = None) -> list[Path]:
    """SOURCE's images: :func:`images_of`'s list."""
    return images_of(source, exclude)[0]


def images_of(source: str, exclude: Path | None = None) -> tuple[list[Path], int]:
    """SOURCE's images: a folder (recursively) or a glob (``**`` recurses), sorted, leaving
    out anything under ``exclude`` (the output folder); and how many paths were left out
    as a second way to a file already kept. Each file is sent once, by its real path (a
    glob's ``**`` follows linked folders, loops included): by its path through no link when
    it has one (``a.png`` rather than a link to it, ``sub/b.png`` rather than
    ``linkdir/b.png``), else by the first in sorted order."""
    path = Path(source)
    found = sorted(path.rglob("*")) if path.is_dir() else \
        sorted(map(Path, glob.glob(source, recursive=True)))
    skip = os.path.abspath(exclude) + os.sep if exclude is not None else None
    candidates = [p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not (skip and os.path.abspath(p).startswith(skip))]
    base = source_base(source)
    real_base = os.path.realpath(base)

    def through_a_link(p: Path) -> bool:
        return os.path.realpath(p) != os.path.join(real_base, os.path.relpath(p, base))

    kept: dict[str, Path] = {}
    for p in sorted(candidates, key=lambda p: (through_a_link(p), p)):
        kept.setdefault(os.path.realpath(p), p)
    return sorted(kept.values()), len(candidates) - len(kept)


def check_source(source: str, out: Path) -> None:
    """SOURCE names a folder, a file or a glob (a glob that matches nothing is an empty
    batch), and OUT is not SOURCE nor a folder above it (its images would all be left out as
    output)."""
    path = Path(source)
    if not glob.has_magic(source) and not path.exists():
        raise click.ClickException(f"{source}: no such file or folder")
    base = source_base(source).resolve()
    if base == out.resolve() or base.is_relative_to(out.resolve()):
        raise click.ClickException(f"--out {out} is SOURCE or holds it: give another folder")


def check_same_run(out: Path, job_args: dict, source: str | None = None) -> None:
    """OUT resumes only the run it holds: its model, kind, layer and options, and the folder
    SOURCE's paths are taken under (``source``: real, however SOURCE is spelled) are kept in
    ``OUT/run.json``, and a batch asking for others is refused (its images would otherwise be
    counted done with the other run's results: ``cats/IMG_1.png`` as ``dogs/IMG_1.png``). A
    ``run.json`` from before it kept the folder gets it now."""
    asked = json.loads(json.dumps({k: job_args.get(k) for k in RUN_KEYS}))
    kept = out / "run.json"
    try:
        before = json.loads(kept.read_text())
    except (OSError, ValueError):  # a new folder, or one from before run.json
        before = None
    if isinstance(before, dict):
        now = {**asked, "source": source}
        differ = [k for k in RUN_KEYS if before.get(k) != asked[k]]
        differ += ["source"] if source and before.get("source") not in (None, source) else []
        if differ:
            changed = ", ".join(f"{k} {before.get(k)!r} -> {now[k]!r}" for k in differ)
            raise click.ClickException(f"{out} holds the results of another run ({changed}); "
                                       "give another --out, or remove it to start again")
        if "source" in before or source is None:
            return
    kept.write_text(json.dumps({**asked, **({"source": source} if source else {})},
                               indent=1) + "\n")


def image_key(path: Path, base: Path) -> str:
    """What ``results.jsonl`` knows an image by: its path relative to SOURCE (its output
    folder), however SOURCE was spelled (``photos``, ``./photos``, ``/home/me/photos``)."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(base))


def load_done(results: Path, base: Path = Path(".")) -> dict[str, dict]:
    """The rows of the images that succeeded, by :func:`image_key` under SOURCE's ``base``:
    their ``folder`` (a row written before rows had one: its ``image``, as spelled then,
    from the folder the command runs in)."""
    done: dict[str, dict] = {}
    if results.exists():
        for line in results.read_text(errors="surrogateescape").splitlines():
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:  # a line an interrupted run left half written:
                continue  # its image is computed again
            if row and row["status"] == "succeeded":  # failures are tried again
                done[row.get("folder") or image_key(Path(row["image"]), base)] = row
    return done


def result_row(record: dict, out: Path) -> dict:
    """A ``results.jsonl`` line for one :meth:`Client.map` record."""
    row: dict[str, Any] = {"image": str(record["path"]), "job": record["job"],
                           "index": record["index"], "status": record["status"]}
    if record["files"]:
        row["folder"] = os.path.relpath(record["files"][0].parent, out)
    if record["status"] != "succeeded":
        row["error"] = json.dumps(record.get("error"))
        return row
    top = ((record["item"] or {}).get("predictions") or [{}])[0]
    row.update(top_index=top.get("index"), top_label=top.get("label"),
               top_score=top.get("score"))
    return row


def write_summary(out: Path, rows: list[dict]) -> None:
    # surrogateescape: a file name that is not UTF-8 is written back as its own bytes
    with (out / "summary.csv").open("w", newline="", errors="surrogateescape") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(rows, indent=2))


def run_batch(client: Client, source: str, out: Path, concurrency: int = 4,
              images_per_job: int | None = None, **job_args: Any) -> dict:
    """Run SOURCE's images through ``client.map`` (the CLI gives it a client that retries up
    to :data:`RATE_RETRIES` times per request, so a rate-limited batch waits out many 429s).
    ``concurrency`` is the number of jobs in flight. A first Ctrl-C sends no more jobs and
    records those in flight as they end (``not_sent`` counts the images left for a rerun); a
    second one raises ``KeyboardInterrupt`` at once."""
    check_source(source, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot make the output folder {out}: {exc}") from exc
    results = out / "results.jsonl"
    base = source_base(source)
    check_same_run(out, job_args, os.path.realpath(base))
    done = load_done(results, base)
    images, links = images_of(source, exclude=out)
    todo = [p for p in images if image_key(p, base) not in done]
    records = client.map(todo, images_per_job=images_per_job, in_flight=concurrency,
                         out_dir=out, base=base, **job_args)
    recorded = 0
    interrupts: list[int] = []
    with click.progressbar(length=len(todo), label="images", file=None) as bar, \
            _first_interrupt_stops(records, interrupts):
        for record in records:
            row = result_row(record, out)
            with results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            done[image_key(record["path"], base)] = row
            recorded += 1
            bar.update(1)
    rows = [done[key] for p in images if (key := image_key(p, base)) in done]  # the latest
    write_summary(out, rows)
    failed = sum(1 for r in rows if r["status"] != "succeeded")
    return {"done": len(rows) - failed, "failed": failed,
            "skipped": len(images) - len(todo), "not_sent": len(todo) - recorded,
            "links": links, "interrupted": bool(interrupts)}


@contextmanager
def _first_interrupt_stops(records: MapRecords, interrupts: list) -> Iterator[None]:
    """While the batch runs (in the main thread, unless SIGINT was ignored when it started:
    ``nohup``, a background job): a first SIGINT stops ``records`` sending jobs, a second
    raises ``KeyboardInterrupt``. Each is appended to ``interrupts``."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        interrupts.append(signum)
        if len(interrupts) > 1:
            raise KeyboardInterrupt
        records.stop()
        click.echo("\nstopping: no more jobs are sent; the jobs in flight are recorded as "
                   "they end (Ctrl-C again to quit now)", err=True)

    before = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
