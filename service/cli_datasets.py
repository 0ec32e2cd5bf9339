"""``convscope datasets ...``: upload an archive of images, register a server folder, list,
show and remove datasets, and generate a ground-truth dataset of shapes offline."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from service.cli_options import with_client
from service.client import ApiError, Client


@click.group()
def datasets() -> None:
    """Image datasets: upload, register, list, show, rm; make-shapes writes one offline."""


def _print(dataset: dict) -> None:
    click.echo(json.dumps(dataset, indent=2))
    click.echo(f"dataset {dataset['id']} ({dataset['status']}): {dataset['images']} images, "
               f"{dataset.get('skipped_count', 0)} skipped", err=True)


@datasets.command("upload")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None, help="A name to show (default: the file's name).")
@click.option("--wait", default=60.0, show_default=True, help="Seconds to wait for a worker.")
@with_client
def datasets_upload(archive: str, name: str | None, wait: float, url: str,
                    api_key: str | None) -> None:
    """Upload a .zip or .tar(.gz) of images, with an optional labels.csv (file,class) and
    boxes.json ({file: [[class, x0, y0, x1, y1], ...]}) at its root."""
    try:
        _print(Client(url, api_key).upload_dataset(archive, name, wait))
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc


@datasets.command("register")
@click.argument("server_path")
@click.option("--name", default=None)
@click.option("--wait", default=60.0, show_default=True)
@with_client
def datasets_register(server_path: str, name: str | None, wait: float, url: str,
                      api_key: str | None) -> None:
    """Register a folder on the server (inside its CONVSCOPE_DATASET_ROOTS), read in place."""
    try:
        _print(Client(url, api_key).register_dataset(server_path, name, wait))
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc


@datasets.command("list")
@with_client
def datasets_list(url: str, api_key: str | None) -> None:
    try:
        found = Client(url, api_key).datasets()
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc
    for d in found:
        marks = "".join(m for m, on in (("L", d["has_labels"]), ("B", d["has_boxes"])) if on)
        click.echo(f"{d['id']:<18} {d['status']:<11} {d['images']:>7} {marks:<3} {d['name']}")


@datasets.command("show")
@click.argument("dataset_id")
@with_client
def datasets_show(dataset_id: str, url: str, api_key: str | None) -> None:
    try:
        click.echo(json.dumps(Client(url, api_key).dataset(dataset_id), indent=2))
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc


@datasets.command("rm")
@click.argument("dataset_ids", nargs=-1, required=True)
@with_client
def datasets_rm(dataset_ids: tuple[str, ...], url: str, api_key: str | None) -> None:
    """Remove datasets (their records and files)."""
    client = Client(url, api_key)
    try:
        for dataset_id in dataset_ids:
            client.delete_dataset(dataset_id)
            click.echo(f"removed {dataset_id}")
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc


@datasets.command("make-shapes")
@click.option("--n", "count", default=5000, show_default=True, type=click.IntRange(min=1))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--size", default=64, show_default=True, type=click.IntRange(min=16))
def datasets_make_shapes(count: int, out: str, seed: int, size: int) -> None:
    """Write COUNT generated images of the built-in shapes classes into OUT, with
    labels.csv and boxes.json (each shape's true box, x1/y1 exclusive): ground truth for
    every analysis, offline. Zip OUT (or register it) to use it."""
    command = [sys.executable, "-m", "worker.shapes_dataset", "--n", str(count), "--out", out,
               "--seed", str(seed), "--size", str(size)]
    done = subprocess.run(command)  # the generator lives with the engine, not in the CLI
    if done.returncode:
        raise SystemExit(done.returncode)
