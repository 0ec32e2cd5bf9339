"""A generated dataset with ground truth: images of the built-in ``shapes`` classes (one
shape each, :func:`models.shapes_data.generate_shapes`), ``labels.csv`` with each image's
class and ``boxes.json`` with the tight box of its shape's pixels, ``[class, x0, y0, x1, y1]``
with ``x1``/``y1`` exclusive. ``convscope datasets make-shapes`` runs this module::

    python -m worker.shapes_dataset --n 5000 --out DIR [--seed 0] [--size 64]

Deterministic: the same ``n``, ``seed`` and ``size`` write the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from models.shapes_data import CLASSES, ShapeBatch, generate_shapes

CHUNK = 1000  # images generated at once


def shape_chunks(n: int, seed: int, size: int = 64) -> Iterator[tuple[int, ShapeBatch]]:
    """``(index of the first image, batch)`` for the ``n`` images, a chunk at a time (each
    chunk from its own seed, derived from ``seed`` and the chunk's number)."""
    for number, start in enumerate(range(0, n, CHUNK)):
        chunk_seed = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
        yield start, generate_shapes(min(CHUNK, n - start), seed=chunk_seed, size=size)


def file_name(index: int, n: int) -> str:
    return f"shape_{index:0{max(5, len(str(n - 1)))}d}.png"


def write_shapes_dataset(out: Path, n: int, seed: int = 0, size: int = 64) -> dict:
    """Write the images, ``labels.csv`` and ``boxes.json`` into ``out``; returns a summary."""
    out.mkdir(parents=True, exist_ok=True)
    boxes: dict[str, list] = {}
    counts = dict.fromkeys(CLASSES, 0)
    with open(out / "labels.csv", "w", newline="") as fh:
        rows = csv.writer(fh)
        rows.writerow(["file", "class"])
        for start, batch in shape_chunks(n, seed, size):
            for i, (image, label, box) in enumerate(zip(batch.images, batch.labels,
                                                        batch.boxes, strict=True)):
                name, cls = file_name(start + i, n), CLASSES[int(label)]
                Image.fromarray(image).save(out / name)
                y0, x0, y1, x1 = (int(v) for v in box)
                rows.writerow([name, cls])
                boxes[name] = [[cls, x0, y0, x1, y1]]
                counts[cls] += 1
    (out / "boxes.json").write_text(json.dumps(boxes, indent=0))
    return {"images": n, "classes": counts, "out": str(out)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.n < 1 or args.size < 16:
        parser.error("--n must be at least 1 and --size at least 16")
    print(json.dumps(write_shapes_dataset(args.out, args.n, args.seed, args.size)))


if __name__ == "__main__":
    main()
