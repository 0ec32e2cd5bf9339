"""Regenerate the browser UI's sample images: ``python scripts/make_samples.py``.

Writes one PNG per class (circle, square, triangle, star) drawn by
:func:`models.shapes_data.generate_shapes` into ``service/static/samples/``, plus an
``index.json`` manifest ``[{"file", "label"}]`` the UI reads. Deterministic from the seed.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from models.shapes_data import CLASSES, generate_shapes

OUT = Path(__file__).resolve().parents[1] / "service" / "static" / "samples"
WANTED = ("circle", "square", "triangle", "star")
SEED = 20240


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    batch = generate_shapes(4 * len(CLASSES), seed=SEED)
    manifest = []
    for label in WANTED:
        index = next(i for i, c in enumerate(batch.labels) if CLASSES[int(c)] == label)
        name = f"{label}.png"
        Image.fromarray(batch.images[index]).save(OUT / name, optimize=True)
        manifest.append({"file": name, "label": label})
    (OUT / "index.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(manifest)} samples to {OUT}")


if __name__ == "__main__":
    main()
