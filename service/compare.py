"""Every heatmap method side by side on one image: ``convscope compare`` (and the UI's
Compare card does the same over HTTP).

One job per method, all for the same image and class: a ``gradcam`` job per CAM method of
the server's contract and a ``saliency`` job per saliency method, each with the ``quality``
option, so that every method comes with its deletion and insertion AUC (and the random map's
beside them, the same for all: one seed). Per method the row holds its time per image (the
worker's ``seconds`` of the map's computation when it reports it, else the job's run time;
``traced``: that time includes tracing the method's step, as its first run on a worker does),
and its overlay and curves are saved to ``OUT/<method>/``; ``OUT/compare.png`` puts the
overlays side by side, ``OUT/compare.csv`` and ``compare.json`` hold the table.

Client side only: the pictures are put together with Pillow from the server's PNGs.
"""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from service.api_error import ApiError

COLUMNS = ("method", "kind", "status", "class_index", "score", "seconds", "traced", "deletion_auc",
           "insertion_auc", "random_deletion_auc", "random_insertion_auc", "error")
TILE = 160  # side of one method's overlay in compare.png
CAPTION = 44  # pixels of text under each overlay
IN_FLIGHT = 3  # jobs queued or running at once
LAYERED = ("guided_gradcam",)  # saliency methods with a layer (Grad-CAM's)


def method_jobs(contract: dict, methods: list[str] | None = None) -> list[tuple[str, str]]:
    """``(kind, method)`` of each method to compare: the contract's CAM methods (``gradcam``
    jobs), then its saliency methods, or only ``methods`` (in that order); ValueError for a
    name the server does not offer."""
    offered = [("gradcam", m) for m in contract.get("cam_methods", [])] + \
        [("saliency", m) for m in contract.get("saliency_methods", [])
         if "saliency" in contract.get("kinds", [])]
    if not methods:
        return offered
    by_name = {m: (k, m) for k, m in offered}
    unknown = [m for m in methods if m not in by_name]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; the server offers "
                         f"{', '.join(by_name)}")
    return [by_name[m] for m in methods]


def _run_time(job: dict) -> float | None:
    if job.get("started") is None or job.get("finished") is None:
        return None
    return float(job["finished"]) - float(job["started"])


def row_of(kind: str, method: str, job: dict) -> dict[str, Any]:
    """One method's table row from its ended job."""
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(method=method, kind=kind, status=job.get("status"))
    if job.get("status") != "succeeded":
        row["error"] = (job.get("error") or {}).get("code", job.get("status"))
        return row
    item = job["result"]["items"][0]
    quality = item.get("quality") or {}
    row.update(class_index=item.get("class_index"), score=item.get("score"),
               seconds=item.get("seconds", _run_time(job)), traced=item.get("traced"),
               **{k: quality.get(k) for k in ("deletion_auc", "insertion_auc",
                                              "random_deletion_auc", "random_insertion_auc")})
    return row


def run_compare(client: Any, image: str | Path, *, model: str, layer: str | None = None,
                class_index: int | None = None, methods: list[str] | None = None,
                quality: dict | None = None, out_dir: str | Path | None = None
                ) -> list[dict[str, Any]]:
    """Compare every method (or ``methods``) on ``image`` for ``class_index`` (None: each
    job's top prediction, the same class for all on one image); returns the table's rows in
    method order. With ``out_dir``, saves each method's overlay, curves and item there, and
    the table and ``compare.png``. ``client``: a :class:`service.client.Client`."""
    jobs = method_jobs(client.contract(), methods)
    options: dict[str, Any] = {"quality": quality or True}
    if class_index is not None:
        options["class_index"] = class_index

    def one(kind_method: tuple[str, str]) -> tuple[dict, dict]:
        kind, method = kind_method
        try:
            job = client.submit([image], model=model, kind=kind,
                                layer=layer if kind == "gradcam" or method in LAYERED else None,
                                options={**options, "method": method})
            job = client.wait(job)
        except ApiError as exc:
            job = {"status": "failed", "error": {"code": exc.code, "detail": exc.detail}}
        return job, row_of(kind, method, job)

    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="convscope-compare") as pool:
        done = list(pool.map(one, jobs))
    rows = [row for _, row in done]
    if out_dir is not None:
        save(client, Path(out_dir), done)
    return rows


def save(client: Any, out: Path, done: list[tuple[dict, dict]]) -> None:
    """Each method's overlay, curves and item in ``out/<method>/``; the table and picture."""
    overlays: list[tuple[dict, bytes | None]] = []
    for job, row in done:
        overlay = None
        if row["status"] == "succeeded":
            folder = out / row["method"]
            folder.mkdir(parents=True, exist_ok=True)
            item = job["result"]["items"][0]
            (folder / "item.json").write_text(json.dumps(item, indent=2))
            for base in ("overlay", "quality_curves"):
                name = (item.get("artifacts") or {}).get(base)
                if name:
                    data = client.artifact(job["id"], name)
                    (folder / f"{base}.png").write_bytes(data)
                    overlay = data if base == "overlay" else overlay
        overlays.append((row, overlay))
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps([row for _, row in done], indent=2))
    with (out / "compare.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows(row for _, row in done)
    (out / "compare.png").write_bytes(side_by_side(overlays))


def _number(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def caption(row: dict[str, Any]) -> list[str]:
    """The lines under a method's overlay: its name and time; its AUCs (or its error)."""
    if row["status"] != "succeeded":
        return [row["method"], f"failed: {row['error']}"]
    ms = "–" if row["seconds"] is None else f"{row['seconds'] * 1000:.0f} ms"
    return [f"{row['method']}  {ms}{'*' if row['traced'] else ''}",
            f"del {_number(row['deletion_auc'])}  ins {_number(row['insertion_auc'])}",
            f"random {_number(row['random_deletion_auc'])} / "
            f"{_number(row['random_insertion_auc'])}"]


def side_by_side(overlays: list[tuple[dict, bytes | None]], columns: int = 5) -> bytes:
    """PNG: each method's overlay (grey when it failed) with its caption, in rows."""
    rows = max(1, -(-len(overlays) // columns))
    cols = min(columns, max(1, len(overlays)))
    sheet = Image.new("RGB", (cols * (TILE + 4) + 4, rows * (TILE + CAPTION + 4) + 4), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for i, (row, png) in enumerate(overlays):
        r, c = divmod(i, cols)
        x, y = 4 + c * (TILE + 4), 4 + r * (TILE + CAPTION + 4)
        tile = Image.new("RGB", (TILE, TILE), (200, 200, 200)) if png is None else \
            Image.open(io.BytesIO(png)).convert("RGB").resize((TILE, TILE),
                                                              Image.Resampling.BILINEAR)
        sheet.paste(tile, (x, y))
        for line_no, text in enumerate(caption(row)):
            draw.text((x, y + TILE + 2 + 13 * line_no), text, fill="black", font=font)
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    return buf.getvalue()


def table_text(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table (what the CLI prints)."""
    head = f"{'method':<22}{'time ms':>9}{'deletion':>10}{'insertion':>10}{'random del':>12}" \
        f"{'random ins':>12}"
    lines = [head]
    for row in rows:
        if row["status"] != "succeeded":
            lines.append(f"{row['method']:<22}  failed: {row['error']}")
            continue
        ms = "–" if row["seconds"] is None else f"{row['seconds'] * 1000:.0f}"
        ms += "*" if row["traced"] else ""
        lines.append(f"{row['method']:<22}{ms:>9}{_number(row['deletion_auc']):>10}"
                     f"{_number(row['insertion_auc']):>10}"
                     f"{_number(row['random_deletion_auc']):>12}"
                     f"{_number(row['random_insertion_auc']):>12}")
    if any(row.get("traced") for row in rows):
        lines.append("* includes tracing the method's step (its first run on this worker)")
    return "\n".join(lines)
