"""The ``quality`` job's table as CSV and its mean deletion / insertion curves as a PNG
(matplotlib's Agg canvas, no pyplot state). Imported by task bodies only."""

from __future__ import annotations

import csv
import io
from typing import Any

CSV = "text/csv"
COLUMNS = ("method", "pointing_game", "deletion_auc", "insertion_auc", "images",
           "pointing_images")
REFERENCE_STYLE = "--"  # the random and centre maps are dashed


def quality_csv(rows: list[dict[str, Any]]) -> bytes:
    """One line per row (methods, then reference maps) of :data:`COLUMNS`; empty cells for
    None."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    return buf.getvalue().encode()


def curves_png(rows: list[dict[str, Any]], baseline: str,
               references: tuple[str, ...] = ("random", "centre"),
               measure: str = "probability of the class") -> bytes:
    """Two panels (deletion, insertion): each row's mean curve of ``measure`` (the target
    class's probability) over the fraction of pixels deleted / inserted, AUC in the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for panel, mode in enumerate(("deletion", "insertion")):
        ax = fig.add_subplot(1, 2, panel + 1)
        for row in rows:
            curve = row[f"{mode}_curve"]
            if not curve:
                continue
            steps = len(curve) - 1
            style = REFERENCE_STYLE if row["method"] in references else "-"
            ax.plot([k / steps for k in range(steps + 1)], curve, style,
                    label=f"{row['method']} ({row[f'{mode}_auc']:.3f})")
        ax.set(title=f"{mode} ({baseline} baseline)", xlabel="fraction of pixels",
               ylabel=measure, xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
