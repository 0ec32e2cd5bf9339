"""Regenerate the README's pictures from the trained ``shapes`` model (data/models):
docs/gradcam-overlay.png (Grad-CAM for each object's class on two-object images) and
docs/filters-grid.png (filter patterns of the last conv layer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    from models import render
    from models.cam import make_cam
    from models.filters import AscentOptions, FilterVisualizer
    from models.graph import last_spatial_layer
    from models.shapes_data import CLASSES, generate_pairs
    from models.shapes_model import load_or_train_shapes

    model = load_or_train_shapes(ROOT / "data" / "models")
    pairs = generate_pairs(4, seed=11)
    layer = last_spatial_layer(model)
    cam = make_cam("gradcam", model, layer)
    tiles, labels = [], []
    for i in range(len(pairs.images)):
        image = pairs.images[i].astype(np.float32)
        tiles.append(np.kron(pairs.images[i], np.ones((3, 3, 1), np.uint8)))
        labels.append("input")
        for k in range(2):
            cls = int(pairs.labels[i, k])
            heat = cam(image[None], class_index=cls).heatmaps[0]
            over = render.overlay(pairs.images[i], heat)
            tiles.append(np.kron(over, np.ones((3, 3, 1), np.uint8)))
            labels.append(f"Grad-CAM: {CLASSES[cls]}")
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "gradcam-overlay.png").write_bytes(
        render.to_png(render.tile_grid(tiles, labels, columns=3)))
    viz = FilterVisualizer(model, layer)
    out = viz.run(list(range(min(16, viz.num_channels))), AscentOptions(steps=128, seed=0))
    big = np.stack([np.kron(im, np.ones((2, 2, 1), np.uint8)) for im in out.images])
    (docs / "filters-grid.png").write_bytes(
        render.to_png(render.image_grid(big, [f"{layer} #{f}" for f in out.filters])))
    print("wrote", docs / "gradcam-overlay.png", docs / "filters-grid.png")


if __name__ == "__main__":
    main()
