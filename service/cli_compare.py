"""``convscope compare``: every heatmap method on one image, side by side
(:mod:`service.compare`)."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli_options import with_client
from service.client import ApiError, Client
from worker.contract import MAX_QUALITY_STEPS, QUALITY_BASELINES


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "-m", required=True)
@click.option("--layer", "-l", default=None, help="The CAM methods' (and guided Grad-CAM's) "
              "layer [default: the server's choice, the last spatial layer].")
@click.option("--class-index", "-c", default=None, type=click.IntRange(min=0),
              help="The class every method explains [default: the top prediction].")
@click.option("--methods", default=None,
              help="Comma-separated method names [default: every CAM and saliency method].")
@click.option("--baseline", default="blur", show_default=True,
              type=click.Choice(QUALITY_BASELINES), help="What deleted pixels become.")
@click.option("--steps", default=16, show_default=True,
              type=click.IntRange(1, MAX_QUALITY_STEPS),
              help="Points of each deletion / insertion curve.")
@click.option("--out", "-O", default="convscope-compare", show_default=True,
              type=click.Path(file_okay=False))
@with_client
def compare(image: str, model: str, layer: str | None, class_index: int | None,
            methods: str | None, baseline: str, steps: int, out: str, url: str,
            api_key: str | None) -> None:
    """Every heatmap method on IMAGE for one class: its time and its deletion / insertion AUC
    (beside a random map's), its overlay in OUT/<method>/, all of them in OUT/compare.png and
    the table in OUT/compare.csv and compare.json. A lower deletion AUC and a higher
    insertion AUC mean a more faithful map."""
    from service.compare import run_compare, table_text  # Pillow: only for this command

    wanted = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    try:
        rows = run_compare(Client(url, api_key), image, model=model, layer=layer,
                           class_index=class_index, methods=wanted,
                           quality={"baseline": baseline, "steps": steps}, out_dir=out)
    except (ApiError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    classes = {r["class_index"] for r in rows if r["class_index"] is not None}
    click.echo(f"class {', '.join(map(str, sorted(classes))) or '–'}, baseline {baseline}, "
               f"{steps} steps")
    click.echo(table_text(rows))
    click.echo(f"side by side: {Path(out) / 'compare.png'}")
    if any(r["status"] != "succeeded" for r in rows):
        raise click.ClickException("some methods failed (see the table)")
