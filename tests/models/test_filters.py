"""Filter patterns by gradient ascent: determinism, progress, cancel, and the plug-in objects."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.errors import InvalidInputError
from models.filters import AscentCanceled, AscentOptions, FilterVisualizer
from models.filters.parametrization import FourierImage
from models.filters.transforms import Jitter, RandomAffine, affine_matrix, warp
from tests.models import tiny_models as tm

FAST = AscentOptions(steps=6, seed=0)


@pytest.fixture(scope="module")
def cnns() -> dict[str, keras.Model]:
    return {form: tm.build(form) for form in tm.FORMS}


@pytest.fixture(scope="module")
def conv1(cnns) -> FilterVisualizer:
    return FilterVisualizer(cnns["functional"], "conv1")


def test_output_shapes_and_dtypes(conv1) -> None:
    result = conv1.run([3, 0], FAST)
    assert result.images.shape == (2, 16, 16, 3) and result.images.dtype == np.uint8
    assert result.activation.shape == (2,) and result.activation.dtype == np.float32
    assert result.filters == [3, 0] and result.steps == 6
    assert result.images.std() > 0  # not a blank image
    bigger = conv1.run([1], AscentOptions(steps=2, size=24))
    assert bigger.images.shape == (1, 24, 24, 3)


def test_reported_activation_is_each_filters_own_mean(cnns, conv1) -> None:
    result = conv1.run([3, 0, 2], FAST)
    model = cnns["functional"]
    acts = np.asarray(keras.Model(model.input, model.get_layer("conv1").output)(
        result.images.astype(np.float32)))
    means = acts.mean(axis=(1, 2))  # (3 images, 4 channels)
    # image i was optimised for filters[i]; the pixels were rounded to uint8 since
    np.testing.assert_allclose(result.activation, means[[0, 1, 2], [3, 0, 2]], atol=5e-3)


def test_same_seed_same_pixels_other_seed_other_pixels(conv1) -> None:
    first = conv1.run([0, 1], AscentOptions(steps=4, seed=7))
    again = conv1.run([0, 1], AscentOptions(steps=4, seed=7))
    other = conv1.run([0, 1], AscentOptions(steps=4, seed=8))
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.activation, again.activation)
    assert np.abs(first.images.astype(int) - other.images.astype(int)).mean() > 1.0


def test_a_filters_pattern_does_not_depend_on_the_rest_of_its_batch() -> None:
    """Image ``i`` starts from ``(seed, filters[i])`` alone: a filter computed alone, in a
    batch with others, or at another position gives the same pixels (what lets the worker
    cache patterns per filter)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    vis = FilterVisualizer(model, "conv")
    options = AscentOptions(steps=4, size=16, seed=5)
    every = vis.run(list(range(16)), options)
    for part in (list(range(8)), list(range(8, 16)), [13], [9, 2, 14]):
        alone = vis.run(part, options)
        np.testing.assert_array_equal(alone.images, every.images[part], err_msg=str(part))
        np.testing.assert_array_equal(alone.activation, every.activation[part])
    assert np.abs(every.images[0].astype(int) - every.images[1].astype(int)).mean() > 1.0


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_more_steps_reach_a_higher_activation(cnns, layer: str) -> None:
    vis = FilterVisualizer(cnns["functional"], layer)
    channels = list(range(vis.num_channels))
    one = vis.run(channels, AscentOptions(steps=1, learning_rate=0.1)).activation
    many = vis.run(channels, AscentOptions(steps=24, learning_rate=0.1)).activation
    alive = many > 0
    assert alive.any()
    assert (many[alive] > one[alive]).all(), (one, many)


def test_progress_reports_increasing_steps_ending_at_the_total(conv1) -> None:
    calls: list[tuple[int, int]] = []
    conv1.run([0], AscentOptions(steps=10, check_every=4),
              progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 10), (8, 10), (10, 10)]


def test_cancel_stops_within_check_every_steps(conv1) -> None:
    checks: list[int] = []
    reports: list[int] = []

    def cancel_on_second_check() -> bool:
        checks.append(1)
        return len(checks) >= 2

    options = AscentOptions(steps=500, check_every=3)
    with pytest.raises(AscentCanceled, match="after 6 of 500"):
        conv1.run([0], options, progress=lambda d, t: reports.append(d),
                  should_cancel=cancel_on_second_check)
    assert len(checks) == 2  # asked at steps 3 and 6 ...
    assert reports == [3]  # ... and stopped before reporting step 6 as done

    checks.clear()
    with pytest.raises(AscentCanceled, match="after 1 of 500"):
        conv1.run([0], AscentOptions(steps=500, check_every=1),
                  should_cancel=lambda: checks.append(1) or True)
    assert len(checks) == 1


@pytest.mark.parametrize("filters, bad", [([0, 4], "4"), ([-1], "-1"), ([2, 99], "99")])
def test_out_of_range_filter_names_the_index(conv1, filters: list[int], bad: str) -> None:
    with pytest.raises(ValueError, match=rf"\[{bad}\].*4 channels"):
        conv1.run(filters, FAST)


def test_no_filters_raises(conv1) -> None:
    with pytest.raises(InvalidInputError, match="out of range"):
        conv1.run([], FAST)


@pytest.mark.parametrize("form", tm.FORMS)
def test_all_three_forms_give_the_same_patterns(cnns, conv1, form: str) -> None:
    vis = FilterVisualizer(cnns[form], tm.PATHS[form]["conv1"])
    assert vis.num_channels == 4
    got = vis.run([1, 2], FAST)
    expected = conv1.run([1, 2], FAST)  # the functional form, same weights and seed
    assert np.abs(got.images.astype(int) - expected.images.astype(int)).max() <= 1
    np.testing.assert_allclose(got.activation, expected.activation, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs, text", [
    (dict(steps=0), "steps must be in 1..10000, got 0"),
    (dict(steps=10_001), "got 10001"),
    (dict(size=4), "size must be in 8..512, got 4"),
    (dict(size=513), "got 513"),
    (dict(learning_rate=-0.5), "got -0.5"),
])  # fmt: skip
def test_ascent_options_are_checked(kwargs: dict, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        AscentOptions(**kwargs)


# Transforms ---------------------------------------------------------------------------------

SEED = tf.constant([3, 4], tf.int32)


def _batch(size: int = 9) -> tf.Tensor:
    rng = np.random.default_rng(0)
    return tf.constant(rng.uniform(0, 1, (2, size, size, 3)).astype(np.float32))


def test_jitter_zero_is_identity() -> None:
    images = _batch()
    np.testing.assert_array_equal(Jitter(0)(images, SEED).numpy(), images.numpy())


def test_jitter_is_a_window_of_the_reflect_padded_image() -> None:
    images = _batch()
    got = Jitter(2)(images, SEED).numpy()
    padded = np.pad(images.numpy(), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    windows = [(dy, dx) for dy in range(5) for dx in range(5)
               if np.array_equal(padded[:, dy:dy + 9, dx:dx + 9], got)]
    assert len(windows) == 1
    assert any(Jitter(2)(images, tf.constant([s, 0])).numpy().tolist() != got.tolist()
               for s in range(1, 6))  # the seed moves the window


def test_zero_rotation_and_unit_scale_keep_the_image() -> None:
    images = _batch()
    out = RandomAffine(1.0, 1.0, 0.0)(images, SEED)
    np.testing.assert_allclose(out.numpy(), images.numpy(), atol=1e-5)


def test_scale_two_samples_half_way_between_pixels() -> None:
    images = _batch(5)
    got = RandomAffine(2.0, 2.0, 0.0)(images, SEED).numpy()
    # Zoom ×2 about the centre (2, 2): output pixel p samples the input at 2 + (p − 2) / 2.
    pos = 2.0 + (np.arange(5) - 2.0) / 2.0  # 1, 1.5, 2, 2.5, 3
    src = images.numpy()
    expected = np.zeros_like(src)
    for i, y in enumerate(pos):
        for j, x in enumerate(pos):
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            fy, fx = y - y0, x - x0
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 4)
            expected[:, i, j] = (
                (1 - fy) * (1 - fx) * src[:, y0, x0] + (1 - fy) * fx * src[:, y0, x1]
                + fy * (1 - fx) * src[:, y1, x0] + fy * fx * src[:, y1, x1]
            )
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_warp_reflects_at_the_border() -> None:
    """A shift by two columns reads past the right edge: the image mirrored (d c b a | a b c d
    | d c b a), as NumPy's "symmetric" padding."""
    images = _batch(6)
    shift = tf.constant([[1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 0.0]] * 2)  # samples (x + 2, y)
    got = warp(images, shift).numpy()
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (0, 2), (0, 0)), mode="symmetric")
    np.testing.assert_allclose(got, padded[:, :, 2:], atol=1e-6)


@pytest.mark.parametrize("make, text", [
    (lambda: Jitter(-1), "got -1"),
    (lambda: RandomAffine(0.0, 1.0), r"got \(0.0, 1.0\)"),
    (lambda: RandomAffine(1.2, 1.1), r"got \(1.2, 1.1\)"),
    (lambda: RandomAffine(1.0, 1.0, -3.0), "got -3.0"),
    (lambda: FourierImage(1, 8, 8, channels=2), "got 2"),
    (lambda: FourierImage(0, 8, 8), "n=0"),
])  # fmt: skip
def test_invalid_arguments_name_the_value(make, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        make()


@pytest.mark.parametrize("n, h, w, c", [(2, 8, 8, 3), (1, 12, 9, 1)])
def test_fourier_image_is_in_unit_range(n: int, h: int, w: int, c: int) -> None:
    image = FourierImage(n, h, w, c, seed=1, init_std=1.0)  # a wide spread tests the squashing
    pixels = image().numpy()
    assert pixels.shape == (n, h, w, c)
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert pixels.std() > 0.01
    np.testing.assert_array_equal(FourierImage(n, h, w, c, seed=1, init_std=1.0)().numpy(), pixels)
    assert not np.array_equal(FourierImage(n, h, w, c, seed=2, init_std=1.0)().numpy(), pixels)


def test_a_quarter_turn_about_the_centre_is_rot90() -> None:
    images = _batch(7)
    got = warp(images, affine_matrix(images, tf.constant(1.0), tf.constant(np.pi / 2))).numpy()
    np.testing.assert_allclose(got, np.rot90(images.numpy(), k=1, axes=(1, 2)), atol=1e-5)


def test_random_affine_is_reproducible_per_seed() -> None:
    images = _batch(12)
    affine = RandomAffine(0.9, 1.1, 8.0)
    first = affine(images, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(affine(images, tf.constant([1, 2])).numpy(), first)
    assert np.abs(first - images.numpy()).max() > 0.01  # it moved the image
    assert np.abs(affine(images, tf.constant([1, 3])).numpy() - first).max() > 0.01


def test_micro_batches_give_the_same_ascent(cnns, monkeypatch) -> None:
    """The step runs the model on chunks of images; chunk size must not change the result."""
    from models.filters import ascent

    options = AscentOptions(steps=5, seed=3)
    whole = FilterVisualizer(cnns["functional"], "conv2")
    together = whole.run([0, 5, 2, 4], options)
    assert whole._program(4, 16).chunk >= 4
    monkeypatch.setattr(ascent, "CHUNK_PIXELS", 16 * 16)  # one image per micro-batch
    single = FilterVisualizer(cnns["functional"], "conv2")
    apart = single.run([0, 5, 2, 4], options)
    assert single._program(4, 16).chunk == 1
    assert np.abs(together.images.astype(int) - apart.images.astype(int)).max() <= 1
    np.testing.assert_allclose(together.activation, apart.activation, rtol=1e-3, atol=1e-4)
    moved = FilterVisualizer(cnns["functional"], "conv2").run([0, 5, 2, 4],
                                                               AscentOptions(steps=1, seed=3))
    assert np.abs(moved.images.astype(int) - apart.images.astype(int)).max() > 1
