"""The ``convscope`` command: run the service, and talk to it (one code path: the Client)."""

from __future__ import annotations

import gc
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from service.batch import RATE_RETRIES, run_batch
from service.cli_compare import compare
from service.cli_datasets import datasets
from service.cli_models import layers, models
from service.cli_options import with_client
from service.client import ApiError, Client, retry_policy
from worker.contract import DATASET_KINDS, IMAGELESS_KINDS, KINDS, TERMINAL
from worker.settings import Settings

PROGRESS_KINDS = ("filters", *DATASET_KINDS)  # long jobs: submit shows a progress bar
PROGRESS_STEPS = 1000


def parse_options(pairs: tuple[str, ...]) -> dict:
    """``k=v`` pairs; values are JSON when they parse (numbers, lists), else strings."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--option")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def first_request(base: str) -> str:
    """A Grad-CAM request on a sample image, ready to paste into a shell."""
    sample = Path(__file__).resolve().parent / "static" / "samples" / "star.png"
    return (f"curl -s -F image=@{shlex.quote(str(sample))} -F model=shapes -F kind=gradcam "
            f"'{base}/v1/jobs?wait=30'")


def follow(client: Client, job_id: str) -> dict:
    """Wait for a job with a progress bar (on stderr) fed by its Server-Sent Events; long-polls
    instead when the server has no events endpoint (404) or the stream ends early."""
    job: dict | None = None
    try:
        with click.progressbar(length=PROGRESS_STEPS, label=f"job {job_id}",
                               file=sys.stderr) as bar:
            for job in client.events(job_id):
                bar.update(max(0, round(job["progress"] * PROGRESS_STEPS) - bar.pos))
    except ApiError as exc:
        if exc.status != 404 or job is not None:
            raise
    return job if job is not None and job["status"] in TERMINAL else client.wait(job_id)


@click.group()
def main() -> None:
    """convscope: what a convolutional network sees."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Celery worker processes.")
def up(host: str, port: int, workers: int) -> None:
    """Everything in one: (embedded) Redis, workers, the API. Ctrl-C stops it all."""
    from service import launcher  # Redis and process control: not for the client commands

    settings = Settings.from_env()
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    stopping = False

    def shutdown(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        click.echo("stopping convscope...", err=True)
        for proc in reversed(procs):
            launcher.stop(proc)
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    url = settings.redis_url
    if not url:
        proc, url = launcher.start_embedded_redis(Path(settings.data_dir))
        procs.append(proc)
        click.echo(f"embedded Redis at {url} (data in {settings.data_dir}/redis)", err=True)
    env = launcher.child_env(settings, url)
    if subprocess.run(launcher.train_command("shapes"), env=env).returncode != 0:
        shutdown()
    logs = Path(settings.data_dir) / "logs"
    logs.mkdir(exist_ok=True)
    worker_env = {"CONVSCOPE_TF_THREADS": str(launcher.tf_threads(workers)), **env}
    for i in range(workers):
        procs.append(launcher.spawn(launcher.worker_command(1, f"worker{i}"), worker_env,
                                    logs / f"worker{i}.log"))
    procs.append(launcher.spawn(launcher.api_command(host, port), env, logs / "api.log"))
    base = f"http://{host}:{port}"
    client = Client(base)
    while not client.ready():
        if any(p.poll() is not None for p in procs):
            click.echo(f"a process exited early; see {logs}", err=True)
            shutdown()
        time.sleep(0.5)
    click.echo(f"convscope is ready at {base}  (API docs: {base}/docs)")
    click.echo(f"try it: {first_request(base)}")
    while True:
        time.sleep(1.0)
        if any(p.poll() is not None for p in procs):
            click.echo(f"a process exited; stopping (logs in {logs})", err=True)
            shutdown()


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn workers.")
def api(host: str, port: int, workers: int) -> None:
    """The API alone (gunicorn), against CONVSCOPE_REDIS_URL."""
    from service import launcher

    os.execv(sys.executable, launcher.api_command(host, port, workers))


@main.command()
@click.option("--concurrency", default=1, show_default=True, type=int)
@click.option("--name", default="worker", show_default=True)
def worker(concurrency: int, name: str) -> None:
    """A Celery worker alone, against CONVSCOPE_REDIS_URL."""
    from service import launcher

    os.execv(sys.executable, launcher.worker_command(concurrency, name))


@main.command()
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "-m", required=True)
@click.option("--kind", "-k", required=True,
              type=click.Choice(KINDS + DATASET_KINDS))
@click.option("--layer", "-l", default=None)
@click.option("--dataset", "-d", default=None,
              help="A dataset id instead of IMAGES (kind top_examples).")
@click.option("--option", "-o", "pairs", multiple=True, help="key=value (repeatable).")
@click.option("--out", "-O", default="convscope-out", show_default=True, type=click.Path())
@click.option("--wait/--no-wait", default=True, show_default=True)
@with_client
def submit(images: tuple[str, ...], model: str, kind: str, layer: str | None,
           dataset: str | None, pairs: tuple[str, ...], out: str, wait: bool, url: str,
           api_key: str | None) -> None:
    """Queue one job (over IMAGES or a --dataset), wait for it, save every artifact to OUT."""
    client = Client(url, api_key)
    if wait:  # a folder it cannot write is said before the job is made, not after
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.ClickException(f"cannot make the output folder {out}: {exc}") from exc
    try:
        job = client.submit(images, model=model, kind=kind, layer=layer, dataset=dataset,
                            options=parse_options(pairs))
        click.echo(f"job {job['id']} {job['status']}")
        if not wait:
            return
        job = follow(client, job["id"]) if kind in PROGRESS_KINDS else client.wait(job)
        if job["status"] != "succeeded":
            raise click.ClickException(_not_succeeded(job))
        saved = client.artifacts(job, out_dir=Path(out) / job["id"])
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc
    folder = Path(out) / job["id"]  # kinds without artifacts (explain) write only this
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(job, indent=2))
    for i, item in enumerate((job.get("result") or {}).get("items", [])):
        preds = ", ".join(f"{p['label'] or p['index']} {p['score']:.3f}"
                          for p in item.get("predictions", [])[:3])
        if preds:
            click.echo(f"image {i}: {preds}")
    for name, path in saved.items():
        click.echo(f"{name}: {path!s}")


@main.command()
@click.argument("source")
@click.option("--model", "-m", required=True)
@click.option("--kind", "-k", required=True,
              type=click.Choice([k for k in KINDS if k not in IMAGELESS_KINDS]))
@click.option("--layer", "-l", default=None)
@click.option("--option", "-o", "pairs", multiple=True)
@click.option("--out", "-O", required=True, type=click.Path())
@click.option("--concurrency", "-j", default=4, show_default=True,
              type=click.IntRange(min=1), help="Jobs queued or running at once.")
@click.option("--images-per-job", "-n", default=None, type=click.IntRange(min=1),
              help="Images packed into one job  [default: the server's max_images_per_job; "
                   "for inputs over 128², fewer in the first and last jobs]")
@with_client
def batch(source: str, model: str, kind: str, layer: str | None, pairs: tuple[str, ...],
          out: str, concurrency: int, images_per_job: int | None, url: str,
          api_key: str | None) -> None:
    """The images of SOURCE (a folder, searched recursively, or a glob) as multi-image jobs;
    resumable (OUT/results.jsonl); writes OUT/summary.csv and summary.json.

    \b
    Each image gets its own folder: its path relative to SOURCE, suffix kept
    (for a glob, relative to the folder before the first wildcard):
      SOURCE/a.png      -> OUT/a.png/overlay.png, item.json, ...
      SOURCE/a.jpg      -> OUT/a.jpg/overlay.png, ...
      SOURCE/sub/b.png  -> OUT/sub/b.png/...
    """
    client = Client(url, api_key, retry=retry_policy(RATE_RETRIES))
    try:
        summary = run_batch(client, source, Path(out), model=model, kind=kind, layer=layer,
                            options=parse_options(pairs), concurrency=concurrency,
                            images_per_job=images_per_job)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:  # a second Ctrl-C: the jobs in flight are not waited for
        click.echo("\nquit: the images of the jobs in flight were not recorded; run the "
                   "same command again to resume", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # the client's threads would otherwise hold the exit until they end
    click.echo(f"{summary['done']} done, {summary['failed']} failed, "
               f"{summary['skipped']} already done; summary in {out}/summary.csv")
    if summary["links"]:
        click.echo(f"{summary['links']} left out: links to images already in the batch")
    if summary["interrupted"]:  # a script sees it, whatever was left
        click.echo(f"stopped: {summary['not_sent']} images not sent; run the same command "
                   "again to resume")
        sys.exit(130)
    if summary["failed"]:  # a script sees it: exit status 1 (their errors are in the summary)
        sys.exit(1)


main.add_command(models)
main.add_command(layers)
main.add_command(datasets)
main.add_command(compare)


def _not_succeeded(job: dict) -> str:
    """What ``convscope submit`` says of a job that ended otherwise, or did not end in time."""
    error = job.get("error") or {}
    if job["status"] == "failed":
        return f"job {job['id']} failed: {error.get('code') or 'internal_error'}: " \
            f"{error.get('message') or 'no reason given'}"
    if job["status"] == "canceled":
        return f"job {job['id']} was canceled"
    return f"job {job['id']} is still {job['status']} after the wait (GET /v1/jobs/{job['id']})"


def run() -> None:
    """The ``convscope`` command. What the imports made lives until the process exits, so it
    is frozen out of the garbage collector's walks: Python's shutdown walked it all, as does
    any full collection while a command runs (``convscope batch --help``: 0.18 s of CPU
    against 0.22 through ``main``, medians of 40 alternated runs; fastest 0.13 against 0.16)."""
    gc.freeze()
    main()


if __name__ == "__main__":
    run()
