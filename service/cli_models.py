"""``convscope models ...`` and ``convscope layers``: list, show, upload, train models, give
an application model its weights, and print a model's conv arithmetic."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click

from service.cli_options import with_client
from service.client import ApiError, Client
from worker.catalog import APPLICATION_MODELS, TRAINABLE_MODELS
from worker.contract import PREPROCESS_MODES
from worker.settings import Settings


@click.group()
def models() -> None:
    """List, show, upload and train models; give an application model its weights."""


@models.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also list refused uploads.")
@with_client
def models_list(show_all: bool, url: str, api_key: str | None) -> None:
    for m in Client(url, api_key).models(show_all):
        shape = "×".join(str(d) for d in m["input_shape"] or []) or "?"
        note = "  (random weights)" if m.get("random_weights") else ""
        click.echo(f"{m['id']:<18} {m['status']:<10} {shape:<12} {m['name']}{note}")


@models.command("show")
@click.argument("model_id")
@with_client
def models_show(model_id: str, url: str, api_key: str | None) -> None:
    click.echo(json.dumps(Client(url, api_key).model(model_id, wait=30), indent=2))


@models.command("upload")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None, help="Unique per API key; jobs may use it as --model.")
@click.option("--preprocess", default="raw", show_default=True,
              type=click.Choice(PREPROCESS_MODES))
@with_client
def models_upload(path: str, name: str | None, preprocess: str, url: str,
                  api_key: str | None) -> None:
    """Upload a .keras model; prints its record, then how to name it in jobs."""
    try:
        model = Client(url, api_key).upload_model(path, name, preprocess)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(model, indent=2))
    click.echo(f"model {model['id']} ({model['status']}): use --model {model['name']} "
               f"or --model {model['id']}", err=True)


@models.command("train")
@click.argument("model_id", type=click.Choice(TRAINABLE_MODELS))
def models_train(model_id: str) -> None:
    """Train a built-in model into the data directory (runs TensorFlow in a child process)."""
    from service import launcher

    raise SystemExit(subprocess.run(launcher.train_command(model_id)).returncode)


@models.command("weights")
@click.argument("model_id", type=click.Choice(APPLICATION_MODELS))
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def models_weights(model_id: str, path: str) -> None:
    """Give a keras.applications model its weights from a local file (offline).

    PATH is a Keras weights file for the full model (with its classifier top): the
    ImageNet file Keras itself downloads (e.g. resnet50_weights_tf_dim_ordering_tf_kernels.h5)
    or a ``.weights.h5`` saved by ``model.save_weights``. It is copied into
    ``$CONVSCOPE_DATA_DIR/weights/``; workers load it the next time the model is used.
    """
    from service import launcher
    from worker.store import JobStore
    from worker.uploads import install_weights

    settings = Settings.from_env()
    try:
        target = install_weights(Path(path), settings.data_dir, model_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="PATH") from exc
    click.echo(f"{model_id}: weights installed at {target}")
    url = settings.redis_url or launcher.embedded_redis_url(settings.data_dir)
    if url:
        try:
            JobStore.from_url(url).forget_model(model_id)
            click.echo("its stored description was cleared; it is re-described on next use")
        except Exception as exc:  # Redis down: the file is in place all the same
            click.echo(f"could not reach Redis to clear the model's description: {exc}",
                       err=True)


def _fmt(value: object) -> str:
    return "×".join(str(v) for v in value) if isinstance(value, list) else str(value or "")


@click.command()
@click.argument("model_id")
@click.option("--explain/--brief", default=True, show_default=True,
              help="Spell out the output-size and parameter formulas under conv/pool rows.")
@with_client
def layers(model_id: str, explain: bool, url: str, api_key: str | None) -> None:
    """The layer arithmetic of MODEL_ID as a table: output = (n + 2p − f)/s + 1,
    params = (f·f·c_in + 1)·filters, with the numbers filled in."""
    try:
        rows = Client(url, api_key).layers(model_id)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc
    head = f"{'layer':<28} {'type':<20} {'output':<16} {'params':>9} {'kernel':<7} " \
           f"{'stride':<7} {'pad':<6} {'RF':<8}"
    click.echo(head)
    click.echo("-" * len(head))
    for r in rows:
        click.echo(f"{r['name'][:28]:<28} {r['type'][:20]:<20} {_fmt(r['output_shape']):<16} "
                   f"{r['params']:>9} {_fmt(r['kernel_size']):<7} {_fmt(r['strides']):<7} "
                   f"{_fmt(r['padding']):<6} {_fmt(r['receptive_field']):<8}")
        arithmetic = r.get("arithmetic") or {}
        if explain and arithmetic.get("output_size"):
            click.echo(f"    output size: {arithmetic['output_size']}")
        if explain and arithmetic.get("params"):
            click.echo(f"    params:      {arithmetic['params']}")
