"""Heatmap quality measures on hand-made heatmaps and a fake, pure-NumPy classifier."""

from __future__ import annotations

import numpy as np
import pytest

from models.quality import pointing_game, pointing_hit, saliency_curve


def peak_at(y: int, x: int, shape: tuple[int, int] = (8, 8)) -> np.ndarray:
    heat = np.zeros(shape, np.float32)
    heat[y, x] = 1.0
    return heat


@pytest.mark.parametrize("peak, box, tolerance, hit", [
    ((3, 4), (2, 3, 5, 6), 0, True),  # inside
    ((2, 3), (2, 3, 5, 6), 0, True),  # the box's first row and column are inside
    ((5, 4), (2, 3, 5, 6), 0, False),  # y1 is exclusive
    ((3, 6), (2, 3, 5, 6), 0, False),  # x1 is exclusive
    ((0, 0), (2, 3, 5, 6), 0, False),  # far outside
    ((5, 4), (2, 3, 5, 6), 1, True),  # one row below, within tolerance 1
    ((1, 2), (2, 3, 5, 6), 1, True),  # one up and one left
    ((6, 4), (2, 3, 5, 6), 1, False),  # two rows below
    ((0, 4), (2, 3, 5, 6), 2, True),
])  # fmt: skip
def test_pointing_hit(peak, box, tolerance: int, hit: bool) -> None:
    assert pointing_hit(peak_at(*peak), box, tolerance) is hit


def test_pointing_hit_uses_the_maximum_not_the_mass() -> None:
    heat = np.full((8, 8), 0.5, np.float32)
    heat[0:2, 0:2] = 0.9  # a broad bright area inside the box
    heat[7, 7] = 1.0  # but the single maximum is outside
    assert not pointing_hit(heat, (0, 0, 2, 2))
    assert pointing_hit(heat, (6, 6, 8, 8))


def test_pointing_game_is_the_fraction_of_hits() -> None:
    heats = np.stack([peak_at(1, 1), peak_at(6, 6), peak_at(4, 4), peak_at(0, 7)])
    boxes = np.array([[0, 0, 3, 3], [0, 0, 3, 3], [3, 3, 6, 6], [0, 6, 2, 8]])
    assert pointing_game(heats, boxes) == pytest.approx(3 / 4)
    assert pointing_game(heats, boxes, tolerance=4) == pytest.approx(1.0)  # (6, 6) < 3 + 4
    assert pointing_game(np.zeros((0, 8, 8)), np.zeros((0, 4))) == 0.0
    with pytest.raises(ValueError):
        pointing_game(heats, boxes[:3])


def fake_predict(images: np.ndarray) -> np.ndarray:
    """Class 0 probability = image mean / 2.5, class 1 the rest: a pure function of pixels."""
    p = images.reshape(len(images), -1).mean(axis=1) / 2.5
    return np.stack([p, 1.0 - p], axis=1)


# A 2×2 one-channel image [[4, 3], [2, 1]] (mean 2.5 → p = 1); the heatmap ranks the pixels
# in the order of their values, so the brightest pixel goes first.
IMAGE = np.array([[4.0, 3.0], [2.0, 1.0]], np.float32)[..., None]
GOOD = np.array([[0.9, 0.7], [0.5, 0.1]], np.float32)
BAD = GOOD[::-1, ::-1].copy()  # ranks the dimmest pixel first


def test_deletion_curve_by_hand() -> None:
    curve, area = saliency_curve(fake_predict, IMAGE, GOOD, 0, mode="deletion", steps=4)
    # Pixels left after deleting 0..4 of them: sums 10, 6, 3, 1, 0 → means /4 → p = mean / 2.5.
    np.testing.assert_allclose(curve, [1.0, 0.6, 0.3, 0.1, 0.0], atol=1e-6)
    # Trapezoids of width 1/4: (1 + .6)/2 + (.6 + .3)/2 + (.3 + .1)/2 + (.1 + 0)/2 = 1.5 → /4
    assert area == pytest.approx(0.375)
    _, bad_area = saliency_curve(fake_predict, IMAGE, BAD, 0, mode="deletion", steps=4)
    # sums 10, 9, 7, 4, 0 → p 1, .9, .7, .4, 0 → (1.9 + 1.6 + 1.1 + .4) / 2 / 4 = 0.625
    assert bad_area == pytest.approx(0.625)
    assert area < bad_area  # a good map makes the probability fall sooner


def test_insertion_curve_by_hand() -> None:
    curve, area = saliency_curve(fake_predict, IMAGE, GOOD, 0, mode="insertion", steps=4)
    # Inserted sums 0, 4, 7, 9, 10 → p 0, .4, .7, .9, 1
    np.testing.assert_allclose(curve, [0.0, 0.4, 0.7, 0.9, 1.0], atol=1e-6)
    assert area == pytest.approx((0.4 + 1.1 + 1.6 + 1.9) / 2 / 4)  # 0.625
    curve1, _ = saliency_curve(fake_predict, IMAGE, GOOD, 1, mode="insertion", steps=4)
    np.testing.assert_allclose(curve1, 1.0 - curve, atol=1e-6)  # the class index is honoured


def test_curves_start_at_the_image_and_end_at_the_baseline() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 2.5, (6, 5, 3)).astype(np.float32)
    heat = rng.uniform(0, 1, (6, 5)).astype(np.float32)
    baseline = np.full_like(image, 1.25)
    full, base = fake_predict(image[None])[0, 0], fake_predict(baseline[None])[0, 0]
    deletion, _ = saliency_curve(fake_predict, image, heat, 0, "deletion", steps=7,
                                 baseline=baseline)
    insertion, _ = saliency_curve(fake_predict, image, heat, 0, "insertion", steps=7,
                                  baseline=baseline)
    assert deletion.shape == insertion.shape == (8,)
    assert deletion[0] == pytest.approx(full) and deletion[-1] == pytest.approx(base)
    assert insertion[0] == pytest.approx(base) and insertion[-1] == pytest.approx(full)
    zero, _ = saliency_curve(fake_predict, image, heat, 0, "deletion", steps=7)
    assert zero[-1] == pytest.approx(0.0)  # the default baseline is black


def test_steps_that_do_not_divide_the_pixels() -> None:
    image = np.ones((3, 1, 1), np.float32) * 2.5  # three pixels, p = 1
    heat = np.array([[3.0], [2.0], [1.0]], np.float32)
    curve, _ = saliency_curve(fake_predict, image, heat, 0, "deletion", steps=2)
    # step 1 deletes round(3 · 1/2) = 2 pixels (Python rounds half to even)
    np.testing.assert_allclose(curve, [1.0, 1 / 3, 0.0], atol=1e-6)


def test_mode_and_shape_are_checked() -> None:
    with pytest.raises(ValueError, match="'erase'"):
        saliency_curve(fake_predict, IMAGE, GOOD, 0, mode="erase")
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        saliency_curve(fake_predict, IMAGE, np.zeros((3, 2), np.float32), 0)
