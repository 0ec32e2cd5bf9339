"""The atlas's crops mark the max unit: the centre pixel of its field, completed from the
other side where the image border cuts it, is the pixel the ring surrounds in each crop."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.render import GAP, LABEL_HEIGHT
from worker.dataset_crops import MARK, crops_png, mark_unit, unit_centre
from worker.datasets import Manifest, dataset_dir, new_dataset_id, open_dataset, write_manifest

SIZE = 24  # the test image's side


def _boxes(layers: list, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output unit along one axis: the receptive box (clipped) and its true centre."""
    import keras

    from models.receptive_field import receptive_grid

    inputs = keras.Input((size, size, 1))
    x = inputs
    for layer in layers:
        x = layer(x)
    grid = receptive_grid(keras.Model(inputs, x), layers[-1].name)
    return grid.rows, grid.cols


@pytest.mark.parametrize(("layers", "centre"), [
    # two 3×3 "same" convolutions: field 5, unit y centred on pixel y, cut at both borders
    (lambda k: [k.layers.Conv2D(1, 3, padding="same", name="a"),
                k.layers.Conv2D(1, 3, padding="same", name="b")], lambda y: y),
    # a 3×3 "valid" convolution of stride 2: unit y sees 2y..2y+2
    (lambda k: [k.layers.Conv2D(1, 3, strides=2, name="c")], lambda y: 2 * y + 1),
    # 5×5 "same", stride 2 on 24 pixels (padding 1 before, 2 after): unit y sees
    # 2y-1..2y+3, cut at both borders
    (lambda k: [k.layers.Conv2D(1, 5, strides=2, padding="same", name="d")],
     lambda y: 2 * y + 1),
])
def test_unit_centre_is_the_centre_of_the_uncut_field(layers, centre) -> None:
    import keras

    rows, _ = _boxes(layers(keras), SIZE)
    field = int(max(last - first + 1 for first, last in rows))
    for y, (first, last) in enumerate(rows):
        assert unit_centre(int(first), int(last) + 1, field, SIZE) == centre(y), y


def _manifest(data: Path) -> Manifest:
    dataset_id = new_dataset_id()
    folder = dataset_dir(data, dataset_id)
    folder.mkdir(parents=True)
    Image.fromarray(np.full((SIZE, SIZE, 3), 90, np.uint8)).save(folder / "grey.png")
    write_manifest(folder, {"root": ".", "images": [{"file": "grey.png",
                                                     "size": [SIZE, SIZE]}]})
    return open_dataset(data, dataset_id)


def _tiles(png: bytes, count: int, side: int) -> list[np.ndarray]:
    with Image.open(io.BytesIO(png)) as img:
        pixels = np.asarray(img.convert("RGB"))
    top = GAP + LABEL_HEIGHT
    return [pixels[top:top + side, GAP + i * (side + GAP):GAP + i * (side + GAP) + side]
            for i in range(count)]


def test_every_crop_rings_its_unit(tmp_path: Path) -> None:
    # A 5×5 field at stride 1 ("same"): unit (y, x) is centred on pixel (y, x); the crops
    # of border units are cut.
    manifest = _manifest(tmp_path)
    units = [(10, 12), (0, 0), (1, 23), (23, 5)]
    top = [{"image": 0, "value": 1.0, "y": y, "x": x,
            "crop": [max(0, x - 2), max(0, y - 2), min(SIZE, x + 3), min(SIZE, y + 3)]}
           for y, x in units]
    png = crops_png(manifest, {"index": 0, "top": top}, [SIZE, SIZE, 3], 1 << 20)
    scale = -(-48 // 5)  # MIN_TILE over the field, rounded up
    for (y, x), crop, tile in zip(units, top, _tiles(png, len(units), 5 * scale),
                                  strict=True):
        ring = np.argwhere((tile == MARK).all(axis=-1))
        assert len(ring), (y, x)
        (ty0, tx0), (ty1, tx1) = ring.min(axis=0), ring.max(axis=0)
        block_y = (y - crop["crop"][1]) * scale  # the unit's pixel, scaled, in the tile
        block_x = (x - crop["crop"][0]) * scale
        assert ((ty0 + ty1) / 2, (tx0 + tx1) / 2) == pytest.approx(
            (block_y + (scale - 1) / 2, block_x + (scale - 1) / 2), abs=1), (y, x)


def test_the_ring_is_clipped_to_the_tile() -> None:
    tile = np.zeros((8, 8, 3), np.uint8)
    mark_unit(tile, [0, 0, 4, 4], (0, 0), 2)
    marked = (tile == MARK).all(axis=-1)
    assert marked[3, :4].all() and marked[:4, 3].all()  # the ring's far sides
    assert not marked[4:].any() and not marked[:, 4:].any()
