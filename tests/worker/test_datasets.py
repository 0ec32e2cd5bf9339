"""The worker's side of datasets: the make-shapes generator's ground truth checked against
its own pixels, and chunk reads that report a bad image instead of raising."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.datasets import dataset_dir, open_dataset, read_images, write_manifest
from worker.shapes_dataset import shape_chunks, write_shapes_dataset

NOISE = 22  # the generator's pixel noise stays within ±21 grey levels of the fill colour


def test_make_shapes_boxes_enclose_exactly_the_shapes_pixels(tmp_path: Path) -> None:
    n, seed = 1200, 3  # two chunks
    write_shapes_dataset(tmp_path, n, seed)
    boxes = json.loads((tmp_path / "boxes.json").read_text())
    with open(tmp_path / "labels.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "class"] and len(rows) == n + 1
    colors = np.concatenate([batch.colors for _, batch in shape_chunks(n, seed)])
    for name, label in rows[1:301] + rows[-300:]:
        index = int(name.removeprefix("shape_").removesuffix(".png"))
        [[cls, x0, y0, x1, y1]] = boxes[name]
        assert cls == label
        pixels = np.asarray(Image.open(tmp_path / name)).astype(int)
        shape = np.abs(pixels - colors[index]).max(axis=-1) < NOISE
        box = np.zeros_like(shape)
        box[y0:y1, x0:x1] = True
        assert shape.any() and not (shape & ~box).any(), name  # every shape pixel inside
        # and the box is tight: a shape pixel on each of its four edges
        assert shape[y0, x0:x1].any() and shape[y1 - 1, x0:x1].any(), name
        assert shape[y0:y1, x0].any() and shape[y0:y1, x1 - 1].any(), name
    assert len({row[1] for row in rows[1:]}) == 6


def test_read_images_reports_bad_images_and_clips_the_range(tmp_path: Path) -> None:
    dataset_id = "d" + "0" * 16
    folder = dataset_dir(tmp_path, dataset_id)
    files = folder / "files"
    files.mkdir(parents=True)
    good = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    Image.fromarray(good).save(files / "good.png")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(files / "bad.png")
    (files / "bad.png").write_bytes((files / "bad.png").read_bytes()[:600])  # truncated
    outside = tmp_path / "outside.png"
    Image.fromarray(good).save(outside)
    (files / "link.png").symlink_to(outside)
    names = ["bad.png", "gone.png", "good.png", "link.png"]
    write_manifest(folder, {"id": dataset_id, "root": "files", "has_labels": False,
                            "has_boxes": False, "classes": [],
                            "images": [{"file": f, "size": [4, 5]} for f in names]})
    manifest = open_dataset(tmp_path, dataset_id)
    assert len(manifest) == 4
    reads = read_images(manifest, -3, 99)
    assert [r.image.file for r in reads] == names
    assert [r.pixels is None for r in reads] == [True, True, False, True]
    assert "corrupt" in (reads[0].error or "") and "gone" in (reads[1].error or "")
    assert "outside" in (reads[3].error or "")
    np.testing.assert_array_equal(reads[2].pixels, good)
    assert read_images(manifest, 2, 3)[0].image.index == 2


def test_png_fast_path_gives_pillows_pixels_for_every_png_type(tmp_path: Path) -> None:
    """libspng (``fast_png``) and Pillow's ``convert("RGB")`` agree on 8-bit grey, grey +
    alpha, RGB, RGBA, palette (with transparency) and 2-bit palette images; 16-bit images go
    to Pillow; a header past the pixel limit is refused before decoding."""
    from worker import datasets

    assert datasets.png_decode.pyspng is not None, "pyspng (a dependency) is not installed"
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (23, 17, 4), dtype=np.uint8)
    palette = Image.fromarray(rgba[..., :3]).quantize(colors=7)
    palette.info["transparency"] = 2
    few = Image.fromarray(rgba[..., 0] // 64, "L").convert("P")
    cases = {
        "grey.png": (Image.fromarray(rgba[..., 0]), {}),
        "grey_alpha.png": (Image.fromarray(rgba[..., :2].copy(), "LA"), {}),
        "rgb.png": (Image.fromarray(rgba[..., :3].copy()), {}),
        "rgba.png": (Image.fromarray(rgba), {}),
        "palette.png": (palette, {"transparency": 2}),
        "two_bit.png": (few, {"bits": 2}),
        "deep.png": (Image.fromarray(rgba[..., 0].astype(np.uint16) * 257), {}),
    }
    fast = {}
    for name, (img, params) in cases.items():
        img.save(tmp_path / name, **params)
        want = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        fast[name] = datasets.fast_png(tmp_path / name, 10**6)
        got = fast[name] if fast[name] is not None else \
            np.asarray(datasets.decode(tmp_path / name, 10**6).convert("RGB"))
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert fast["deep.png"] is None  # 16 bits: Pillow's
    assert all(fast[n] is not None for n in cases if n != "deep.png")
    with pytest.raises(ValueError, match="over the limit of 100"):
        datasets.fast_png(tmp_path / "rgb.png", 100)
    raw = bytearray((tmp_path / "rgb.png").read_bytes())
    raw[-20] ^= 0xFF  # a byte of the last IDAT: its CRC no longer matches
    (tmp_path / "damaged.png").write_bytes(bytes(raw))
    assert datasets.fast_png(tmp_path / "damaged.png", 10**6) is None  # Pillow decides
    (tmp_path / "cut.png").write_bytes(bytes(raw[:-30]))
    assert datasets.fast_png(tmp_path / "cut.png", 10**6) is None


def test_a_chunk_is_brought_to_the_model_size_one_image_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_chunk gives each image as ``fit`` makes it, and never holds the chunk's images
    at full size together: NumPy's allocations (traced) peak near one decoded image, not
    near the six of them (1.8 MB each)."""
    import tracemalloc

    from worker import dataset_inputs, datasets
    from worker.dataset_crops import fit

    dataset_id, side, shape = "d" + "1" * 16, 768, [32, 32, 3]
    files = dataset_dir(tmp_path, dataset_id) / "files"
    files.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(6)]
    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(files / f"{i}.png", compress_level=1)
    (files / "6.png").write_bytes(b"not a png")
    write_manifest(dataset_dir(tmp_path, dataset_id),
                   {"id": dataset_id, "root": "files", "has_labels": False, "has_boxes": False,
                    "classes": [], "images": [{"file": f"{i}.png", "size": [side, side]}
                                              for i in range(7)]})
    manifest = open_dataset(tmp_path, dataset_id)
    monkeypatch.setattr(dataset_inputs, "manifest", lambda _: manifest)
    monkeypatch.setattr(dataset_inputs, "input_shape", lambda _: shape)
    # Pillow's path (NumPy arrays, which tracemalloc sees; libspng's buffers it does not)
    monkeypatch.setattr(datasets, "FAST_PNG_MAX_BYTES", 0)
    job = {"dataset": dataset_id, "options": {"chunk_images": 8}}
    tracemalloc.start()
    try:
        chunk = dataset_inputs.read_chunk(job, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert chunk.indices == list(range(6)) and chunk.corrupt == 1
    for got, pixels in zip(chunk.pixels, images, strict=True):
        np.testing.assert_array_equal(got, fit(pixels, shape))
    # one image decoded, with its copies, peaked at about 3 of its sizes; all six held at
    # once (as before) at 7
    assert peak < 4.5 * images[0].nbytes, peak
