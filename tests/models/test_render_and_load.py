"""Rendering to PNG and safe loading of uploaded ``.keras`` files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from models import render
from models.safe_load import HDF5_MAGIC, InvalidModelError, UnsafeModelError, load_keras_file
from tests.models import tiny_models as tm

L = keras.layers
# Keras's own saving code converts variables with np.array(copy=False): not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def decode(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return np.asarray(Image.open(io.BytesIO(png)))


# Rendering ----------------------------------------------------------------------------------


def test_to_png_round_trips_through_pillow() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode(render.to_png(rgb)), rgb)
    grey = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    np.testing.assert_array_equal(decode(render.to_png(grey)), grey)
    np.testing.assert_array_equal(decode(render.to_png(grey[..., None])), grey)
    floats = np.array([[-20.0, 0.0, 100.0, 300.0]])
    np.testing.assert_array_equal(decode(render.to_png(floats)), [[0, 0, 100, 255]])


def test_colorize_uses_the_matplotlib_colormap() -> None:
    values = np.array([[0.0, 0.5], [1.0, 2.0]])
    got = render.colorize(values, "viridis")
    assert got.shape == (2, 2, 3) and got.dtype == np.uint8
    expected = np.round(colormaps["viridis"](np.clip(values, 0, 1))[..., :3] * 255)
    np.testing.assert_array_equal(got, expected)
    assert render.heatmap_image(np.zeros((3, 4))).shape == (3, 4, 3)
    many = np.random.default_rng(0).random((50, 60))  # every colour of the table's rule
    np.testing.assert_array_equal(
        render.colorize(many, "jet"),
        (colormaps["jet"](many)[..., :3] * 255 + 0.5).astype(np.uint8))  # half rounds up


def _tile_spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a 1-D mask as (start, end)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2], strict=True))


def test_activation_grid_shows_every_channel_in_its_own_tile() -> None:
    channels = 5
    acts = np.zeros((6, 6, channels), np.float32)
    for c in range(channels):
        acts[0, c, c] = 1.0  # channel c lights up one pixel, in column c
    grid = render.activation_grid(acts)
    low = render.colorize(np.zeros((1, 1)))[0, 0]
    high = render.colorize(np.ones((1, 1)))[0, 0]
    is_low, is_high = (grid == low).all(-1), (grid == high).all(-1)
    content = is_low | is_high
    rows, cols = _tile_spans(content.any(axis=1)), _tile_spans(content.any(axis=0))
    tiles = [(r, c) for r in rows for c in cols if content[r[0]:r[1], c[0]:c[1]].any()]
    assert len(tiles) == channels
    assert grid.shape[0] >= len(rows) * 6 and grid.shape[1] >= len(cols) * 6
    bright = []
    for (r0, r1), (c0, c1) in tiles:
        tile = is_high[r0:r1, c0:c1]
        assert r1 - r0 >= 6 and c1 - c0 >= 6  # tiles are at least the map's own size
        ys, xs = np.nonzero(tile)
        scale = (c1 - c0) // 6
        assert len(ys) == scale * scale  # one map pixel, blown up
        bright.append((ys.min() // scale, xs.min() // scale))
    assert bright == [(0, c) for c in range(channels)]  # channel c in tile c, all different

    subset = render.activation_grid(acts, channels=[1, 3])
    assert (subset == high).all(-1).sum() == 2 * scale * scale
    assert subset.size < grid.size


def _pillow_grid(tiles: list[np.ndarray], labels: list[str], cols: int) -> np.ndarray:
    """The labelled grid as Pillow draws it: ``ImageDraw.text`` per label, then the tile."""
    from PIL import ImageDraw

    h, w = tiles[0].shape[:2]
    rows, step = -(-len(tiles) // cols), render.LABEL_HEIGHT + h + render.GAP
    canvas = Image.new("RGB", (cols * (w + render.GAP) + render.GAP,
                               rows * step + render.GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        x, y = render.GAP + c * (w + render.GAP), render.GAP + r * step
        draw.text((x + 1, y), labels[i], fill="black", font=render._label_font())
        canvas.paste(Image.fromarray(tile), (x, y + render.LABEL_HEIGHT))
    return np.asarray(canvas)


@pytest.mark.parametrize("seed", range(6))
def test_labelled_grid_equals_pillow_drawing_its_labels(seed: int) -> None:
    """Labels composed from cached glyphs are Pillow's own text drawing, pixel for pixel:
    values in every notation, channel indices, and labels wider than their tile (which run
    on over the next label, blended as Pillow blends)."""
    rng = np.random.default_rng(seed)
    n, side = int(rng.integers(1, 12)), int(rng.integers(8, 60))
    tiles = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(n)]
    values = rng.normal(0, 10, n) * 10.0 ** rng.integers(-5, 6, n)
    labels = ([f"{v:.3g}" for v in values] if seed % 2 else
              [str(i) for i in rng.integers(0, 512, n)])
    cols = n if seed % 3 == 0 else max(1, int(np.ceil(np.sqrt(n))))
    got = render.tile_grid(tiles, labels, columns=cols)
    want = _pillow_grid(tiles, labels, cols)
    assert got.shape == want.shape
    assert np.array_equal(got, want)
    assert (got[render.GAP:render.GAP + render.LABEL_HEIGHT] < 128).any()  # text was drawn


def test_overlay_at_the_same_size() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (5, 4, 3)).astype(np.uint8)
    heat = rng.uniform(0, 1, (5, 4))
    np.testing.assert_array_equal(render.overlay(image, heat, alpha=0.0), image)
    np.testing.assert_array_equal(render.overlay(image, heat, alpha=1.0),
                                  render.colorize(heat, "jet"))
    grey = image[..., 0]
    out = render.overlay(grey, heat, alpha=0.0)
    assert out.shape == (5, 4, 3)
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=-1))


def bilinear_reference(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Upsampling with pixel centres at ``i + 0.5`` and clamped edges, in plain NumPy."""
    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, n_in - 1), src - low

    y0, y1, fy = axis(values.shape[0], height)
    x0, x1, fx = axis(values.shape[1], width)
    fy, fx = fy[:, None], fx[None, :]
    top = values[y0][:, x0] * (1 - fx) + values[y0][:, x1] * fx
    bottom = values[y1][:, x0] * (1 - fx) + values[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.mark.parametrize("shape", [(45, 70, 3), (45, 70), (90, 37, 1)])
def test_overlay_at_the_original_size_equals_a_numpy_reference(shape) -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, shape).astype(np.uint8)
    heat = rng.uniform(0, 1, (16, 16)).astype(np.float32)
    alpha = 0.45
    out = render.overlay(image, heat, alpha=alpha)
    assert out.shape == (*shape[:2], 3) and out.dtype == np.uint8
    rgb = np.broadcast_to(image.reshape(*shape[:2], -1), (*shape[:2], 3)).astype(np.float64)
    up = bilinear_reference(heat.astype(np.float64), *shape[:2])
    assert up.min() >= 0.0 and up.max() <= 1.0
    colours = np.round(colormaps["jet"](up)[..., :3] * 255.0)
    expected = (1 - alpha) * rgb + alpha * colours
    # one grey level for float rounding and the truncation to uint8
    assert np.abs(out.astype(np.float64) - expected).max() <= 1.5


def test_a_lit_quadrant_lights_up_that_quadrant_of_the_original() -> None:
    heat = np.zeros((16, 16), np.float32)
    heat[:8, :8] = 1.0  # top-left quadrant of the model-size heatmap
    image = np.full((45, 70, 3), 128, np.uint8)  # non-square, not a multiple of 16
    out = render.overlay(image, heat, alpha=1.0)
    assert out.shape == image.shape
    hot, cold = (render.colorize(np.full((1, 1), v), "jet")[0, 0] for v in (1.0, 0.0))
    # Source row of output row y is (y + 0.5)·16/45 − 0.5: rows 0..20 read only heatmap rows
    # 0..7 (and columns 0..32 only columns 0..7); rows from 24 (columns from 37) read none.
    assert (out[:21, :33] == hot).all()
    assert (out[24:] == cold).all() and (out[:, 37:] == cold).all()
    middle = out[21:24, :33]
    assert not (middle == hot).all(-1).any() and not (middle == cold).all(-1).any()


def test_image_grid_tiles_grey_and_colour_images() -> None:
    images = np.zeros((3, 8, 8, 1), np.uint8)
    grid = render.image_grid(images, ["a", "b", "c"])
    assert grid.ndim == 3 and grid.shape[-1] == 3
    assert grid.shape[0] >= 2 * 8 and grid.shape[1] >= 2 * 8


# Safe loading -------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="convscope_test")
class Doubler(keras.layers.Layer):
    """A custom layer: plain Keras would load it (it is registered), convscope must not."""

    def call(self, x):
        return 2.0 * x


def _save(model: keras.Model, path: Path) -> Path:
    model.save(path)
    return path


def _image_model(middle: keras.Layer | None = None) -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = middle(inputs) if middle is not None else inputs
    x = L.Conv2D(2, 3, name="conv")(x)
    return keras.Model(inputs, L.Dense(2, activation="softmax")(L.Flatten()(x)))


class Spy:
    """Stands in for ``keras.saving.load_model`` to show it was never reached."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        raise AssertionError("Keras was asked to load a model that should have been refused")


def test_clean_model_loads_with_equal_predictions(tmp_path: Path) -> None:
    model = tm.functional()
    loaded = load_keras_file(_save(model, tmp_path / "clean.keras"))
    x = tm.images(2)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    nested = load_keras_file(_save(tm.nested(), tmp_path / "nested.keras"))
    assert [layer.name for layer in nested.layers][1:] == ["base", "flatten", "predictions"]


def _writes_marker(marker: str):
    """A lambda with a side effect; ``marker`` is a str so the closure can be saved."""
    return lambda t: (open(marker, "w").write("the lambda ran"), t)[1]


def test_lambda_layer_is_refused_before_any_code_runs(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "side_effect.txt"
    lam = L.Lambda(_writes_marker(str(marker)), output_shape=(8, 8, 3), name="evil")
    path = _save(_image_model(lam), tmp_path / "lambda.keras")
    assert not marker.exists()

    # Control: the archive really carries code that runs once loaded unsafely and called.
    unsafe = keras.saving.load_model(path, safe_mode=False)
    unsafe(np.zeros((1, 8, 8, 3), np.float32))
    assert marker.read_text() == "the lambda ran"
    marker.unlink()

    spy = Spy()
    monkeypatch.setattr(keras.saving, "load_model", spy)
    with pytest.raises(UnsafeModelError, match="Lambda"):
        load_keras_file(path)
    assert spy.calls == 0  # refused from config.json alone
    assert not marker.exists()


def test_lambda_inside_a_nested_model_is_refused(tmp_path: Path, monkeypatch) -> None:
    inner_in = keras.Input((8, 8, 3))
    inner = keras.Model(inner_in, L.Lambda(lambda t: t * 2.0, output_shape=(8, 8, 3))(inner_in),
                        name="inner")
    path = _save(_image_model(inner), tmp_path / "nested_lambda.keras")
    monkeypatch.setattr(keras.saving, "load_model", Spy())
    with pytest.raises(UnsafeModelError, match="Lambda"):
        load_keras_file(path)


def test_custom_registered_layer_is_refused(tmp_path: Path, monkeypatch) -> None:
    path = _save(_image_model(Doubler(name="doubler")), tmp_path / "custom.keras")
    # Control: Keras itself would load it in safe mode, because the class is registered here.
    assert isinstance(keras.saving.load_model(path, safe_mode=True).get_layer("doubler"), Doubler)
    spy = Spy()
    monkeypatch.setattr(keras.saving, "load_model", spy)
    with pytest.raises(UnsafeModelError, match="Doubler"):
        load_keras_file(path)
    assert spy.calls == 0


def test_hdf5_files_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "model.h5"
    _image_model().save(real)  # legacy HDF5 format
    assert real.read_bytes().startswith(HDF5_MAGIC)
    with pytest.raises(UnsafeModelError, match="HDF5"):
        load_keras_file(real)
    fake = tmp_path / "upload.keras"
    fake.write_bytes(HDF5_MAGIC + b"\x00" * 64)
    with pytest.raises(UnsafeModelError, match="HDF5"):
        load_keras_file(fake)


def test_not_a_keras_archive_is_invalid(tmp_path: Path) -> None:
    noise = tmp_path / "noise.keras"
    noise.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(InvalidModelError, match="zip"):
        load_keras_file(noise)
    empty_zip = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(InvalidModelError, match="config.json"):
        load_keras_file(empty_zip)
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("config.json", "{not json")
    with pytest.raises(InvalidModelError):
        load_keras_file(broken)


def test_non_image_models_are_invalid(tmp_path: Path) -> None:
    flat_in = keras.Input((10,))
    flat = keras.Model(flat_in, L.Dense(2)(flat_in))
    with pytest.raises(InvalidModelError, match="image input"):
        load_keras_file(_save(flat, tmp_path / "flat.keras"))
    two_in = keras.Input((8, 8, 2))
    two = keras.Model(two_in, L.Conv2D(1, 3)(two_in))
    with pytest.raises(InvalidModelError, match="2 channels"):
        load_keras_file(_save(two, tmp_path / "two_channels.keras"))


def test_size_limit(tmp_path: Path) -> None:
    path = _save(_image_model(), tmp_path / "small.keras")
    with pytest.raises(InvalidModelError, match="limit is 100"):
        load_keras_file(path, max_bytes=100)


@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_png_encoder_round_trips_every_layout_through_pillow(deflate, monkeypatch) -> None:
    """``models.png`` against Pillow's decoder: grey, RGB and RGBA, smooth and noisy, one
    row and one column (the Up filter's first row has nothing above it); with ISA-L's
    deflate and with zlib's (the fallback)."""
    from models import png

    if deflate == "zlib":
        monkeypatch.setattr(png, "isal_zlib", None)
    else:
        assert png.isal_zlib is not None, "isal (a dependency) is not installed"

    rng = np.random.default_rng(3)
    ramp = np.add.outer(np.arange(40), np.arange(30)).astype(np.uint8)
    cases = [rng.integers(0, 256, (17, 23, 3), dtype=np.uint8), ramp,
             rng.integers(0, 256, (5, 6, 4), dtype=np.uint8), np.full((1, 9, 3), 255, np.uint8),
             rng.integers(0, 256, (9, 1), dtype=np.uint8)]
    for pixels in cases:
        got = np.asarray(Image.open(io.BytesIO(png.encode(pixels))))
        np.testing.assert_array_equal(got, pixels)
    with pytest.raises(TypeError):
        png.encode(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError):
        png.encode(np.zeros((2, 2, 2), np.uint8))


def test_signed_pictures_centre_zero_and_blend_by_magnitude() -> None:
    signed = np.zeros((4, 6), np.float32)
    signed[1, 2], signed[3, 5] = 2.0, -1.0
    picture = render.signed_image(signed).astype(int)
    middle, top, bottom = picture[0, 0], picture[1, 2], picture[3, 5]
    assert abs(middle[0] - middle[2]) < 20 and middle.min() > 200  # zero: near white
    assert top[0] > 100 > top[2] and bottom[2] > bottom[0]  # red up, blue down
    image = np.full((8, 12, 3), 90, np.uint8)  # twice the map's size: resized to it
    blended = render.signed_overlay(image, signed).astype(int)
    assert blended.shape == (8, 12, 3)
    assert (blended[0:2, 0:2] == 90).all()  # no attribution: the image as it was
    assert abs(blended[3, 5] - 90).max() > 40  # the largest one: mostly its colour
    assert (render.signed_overlay(image, np.zeros((4, 6))) == image).all()
