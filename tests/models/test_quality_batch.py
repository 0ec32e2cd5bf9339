"""The batched quality measures (models/quality.py), the sums partials (models/array_sums.py)
against hand computations and plain NumPy loops, with a toy pure-Python "model"."""

from __future__ import annotations

import numpy as np
import pytest

from models import array_sums
from models.quality import (
    baseline_images,
    boxes_for,
    centre_gaussian,
    deletion_insertion,
    gaussian_blur,
    points_into,
    random_map,
    scale_box,
    step_masks,
    trapezoid_auc,
)


def test_trapezoid_auc_by_hand() -> None:
    # fractions 0, 1/4, .., 1: (1 + .5)/2 + (.5 + .5)/2 + (.5 + 0)/2 + 0 = 1.5 → × 1/4
    assert trapezoid_auc(np.array([1.0, 0.5, 0.5, 0.0, 0.0])) == pytest.approx(0.375)
    assert trapezoid_auc(np.array([0.2, 0.2])) == pytest.approx(0.2)
    np.testing.assert_allclose(trapezoid_auc(np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])),
                               [0.75, 1.0])


def left_half_model(images: np.ndarray) -> np.ndarray:
    """Class 0's probability: the mean of the left half's pixels / 10; class 1 the rest."""
    p = np.array([img[:, : img.shape[1] // 2].mean() / 10.0 for img in images])
    return np.stack([p, 1.0 - p], axis=1)


def test_deletion_ordered_by_the_model_region_gives_the_expected_curve() -> None:
    # 2 × 4 image of 10s: the map ranks the left half (4 pixels) first, row-major.
    image = np.full((1, 2, 4, 1), 10.0, np.float32)
    heat = np.array([[[8, 7, 2, 1], [6, 5, 4, 3]]], np.float32)
    deletion, insertion = deletion_insertion(left_half_model, image, heat, [0],
                                             np.zeros_like(image), steps=4)
    # each step deletes 2 pixels: left half loses 2, 2, then nothing is left there
    np.testing.assert_allclose(deletion[0], [1.0, 0.5, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(insertion[0], [0.0, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(trapezoid_auc(deletion), [0.25])  # (1.5 + .5) / 2 / 4
    reverse = heat[:, :, ::-1].copy()  # the right half first: nothing happens at first
    late, _ = deletion_insertion(left_half_model, image, reverse, [0], np.zeros_like(image), 4)
    np.testing.assert_allclose(late[0], [1.0, 1.0, 1.0, 0.5, 0.0])


def test_batched_curves_equal_per_image_loops_and_honour_targets() -> None:
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 10, (5, 3, 4, 2)).astype(np.float32)
    heats = rng.uniform(0, 1, (5, 3, 4)).astype(np.float32)
    bases = rng.uniform(0, 10, images.shape).astype(np.float32)
    targets = [0, 1, 1, 0, 1]
    deletion, insertion = deletion_insertion(left_half_model, images, heats, targets, bases,
                                             steps=3, max_frames=9)  # one image at a time
    for i in range(5):
        masks = step_masks(heats[i], 3)[..., None]
        frames_d = np.where(masks, bases[i], images[i])
        frames_i = np.where(masks, images[i], bases[i])
        np.testing.assert_allclose(deletion[i], left_half_model(frames_d)[:, targets[i]],
                                   rtol=1e-6)
        np.testing.assert_allclose(insertion[i], left_half_model(frames_i)[:, targets[i]],
                                   rtol=1e-6)


def test_pointing_rule_on_hand_made_maps() -> None:
    heat = np.zeros((8, 8), np.float32)
    heat[2, 5] = 1.0  # the maximum at x = 5, y = 2
    assert points_into(heat, [[4, 1, 6, 3]])
    assert not points_into(heat, [[0, 0, 5, 8]])  # x1 = 5 is exclusive
    assert points_into(heat, [[0, 0, 1, 1], [5, 2, 6, 3]])  # any box
    assert not points_into(heat, [])
    boxes = [(1, [0, 0, 2, 2]), (2, [4, 1, 6, 3])]
    assert boxes_for(2, boxes) == [[4, 1, 6, 3]]  # the target's own boxes
    assert boxes_for(7, boxes) == [[0, 0, 2, 2], [4, 1, 6, 3]]  # none of it: all boxes
    assert boxes_for(0, []) == []


def test_scale_box_covers_the_box_at_the_new_size() -> None:
    assert scale_box([10, 20, 30, 40], (100, 50), (50, 100)) == [20, 10, 60, 20]
    assert scale_box([1, 1, 2, 2], (3, 3), (4, 4)) == [1, 1, 3, 3]  # 1.33.. → 1, 2.67 → 3


def test_random_map_is_seeded_and_per_image() -> None:
    a = random_map((6, 5), seed=4, index=9)
    assert a.shape == (6, 5) and a.dtype == np.float32 and 0 <= a.min() and a.max() < 1
    np.testing.assert_array_equal(a, random_map((6, 5), seed=4, index=9))
    assert not np.array_equal(a, random_map((6, 5), seed=4, index=10))
    assert not np.array_equal(a, random_map((6, 5), seed=5, index=9))


def test_centre_gaussian_peaks_at_the_centre() -> None:
    g = centre_gaussian((9, 7), sigma=0.25)
    assert np.unravel_index(np.argmax(g), g.shape) == (4, 3) and g[4, 3] == pytest.approx(1.0)
    assert g[4, 0] == pytest.approx(np.exp(-9 / (2 * 1.75**2)), rel=1e-6)
    np.testing.assert_allclose(g, g[::-1, ::-1])  # symmetric


def test_gaussian_blur_against_a_direct_sum() -> None:
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 7, 6, 3)).astype(np.float32)
    sigma = 1.2
    out = gaussian_blur(images, sigma)
    radius = 4
    x = np.arange(-radius, radius + 1)
    k = np.exp(-(x**2) / (2 * sigma**2))
    k /= k.sum()
    padded = np.pad(images.astype(np.float64), ((0, 0), (radius,) * 2, (radius,) * 2, (0, 0)),
                    mode="symmetric")
    want = np.zeros(images.shape)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            want += k[dy] * k[dx] * padded[:, dy:dy + 7, dx:dx + 6]
    np.testing.assert_allclose(out, want, rtol=1e-5)
    flat = np.full((1, 5, 5, 1), 42.0, np.float32)
    np.testing.assert_allclose(gaussian_blur(flat, 2.0), flat, rtol=1e-6)
    np.testing.assert_array_equal(baseline_images(images, "black"), np.zeros_like(images))
    with pytest.raises(ValueError, match="'grey'"):
        baseline_images(images, "grey")


def test_sums_merge_in_any_order_and_survive_json() -> None:
    rng = np.random.default_rng(2)
    parts = [{"s": rng.normal(size=(2, 3)), "n": np.array(i, np.int64)} for i in range(4)]
    ab = array_sums.add(array_sums.add(parts[0], parts[1]), array_sums.add(parts[2], parts[3]))
    ba = array_sums.add(parts[3], array_sums.add(parts[2], array_sums.add(parts[1], parts[0])))
    np.testing.assert_allclose(ab["s"], sum(p["s"] for p in parts))
    np.testing.assert_allclose(ab["s"], ba["s"])
    assert int(ab["n"]) == int(ba["n"]) == 6
    back = array_sums.from_json(array_sums.to_json(ab))
    np.testing.assert_array_equal(back["s"], ab["s"])
    assert back["n"].dtype == np.int64
    with pytest.raises(ValueError, match="'s'"):
        array_sums.add(parts[0], {"s": np.zeros(3)})
