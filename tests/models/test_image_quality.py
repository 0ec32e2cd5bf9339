"""Per-image deletion / insertion curves (models/image_quality.py) against a hand loop in
NumPy on a fake pure-NumPy classifier, against models.quality called directly, and the
property that a map pointing at the evidence beats the random map."""

from __future__ import annotations

import numpy as np
import pytest

from models.image_quality import image_curves
from models.quality import baseline_images, random_map, saliency_curve

SIZE = 8


def predict(images: np.ndarray) -> np.ndarray:
    """Class 0's probability is the mean of the top-left 3×3 corner of channel 0 / 255;
    class 1 the rest. Only those nine pixels matter."""
    p = images[:, :3, :3, 0].reshape(len(images), -1).mean(axis=1) / 255.0
    return np.stack([p, 1.0 - p], axis=1)


def scenes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 60, (n, SIZE, SIZE, 3)).astype(np.float32)
    images[:, :3, :3, 0] = rng.uniform(200, 255, (n, 3, 3))  # bright evidence in the corner
    return images


def hand_curve(image: np.ndarray, heat: np.ndarray, base: np.ndarray, cls: int, mode: str,
               steps: int) -> np.ndarray:
    """Deletion: pixels replaced by ``base`` most-salient first; insertion: put back into
    ``base``. One loop per step, argsort by hand."""
    order = sorted(range(heat.size), key=lambda k: (-heat.ravel()[k], k))
    out = []
    for k in range(steps + 1):
        chosen = np.zeros(heat.size, bool)
        chosen[order[:round(heat.size * k / steps)]] = True
        chosen = chosen.reshape(heat.shape)[..., None]
        frame = np.where(chosen, base, image) if mode == "deletion" else \
            np.where(chosen, image, base)
        out.append(predict(frame[None])[0, cls])
    return np.array(out)


def trapezoid(curve: np.ndarray) -> float:
    xs = np.linspace(0.0, 1.0, len(curve))
    return float(np.sum((curve[1:] + curve[:-1]) * np.diff(xs)) / 2.0)


@pytest.mark.parametrize("baseline", ["blur", "black"])
def test_curves_equal_a_hand_loop(baseline: str) -> None:
    images, steps = scenes(3), 8
    rng = np.random.default_rng(4)
    maps = rng.normal(size=(3, SIZE, SIZE)).astype(np.float32)  # signed, as saliency maps
    targets = [0, 1, 0]
    got = image_curves(predict, images, maps, targets, baseline=baseline, steps=steps, seed=5)
    bases = baseline_images(images, baseline)
    noise = random_map((SIZE, SIZE), 5, 0)
    for i, cls in enumerate(targets):
        for mode in ("deletion", "insertion"):
            expected = hand_curve(images[i], maps[i], bases[i], cls, mode, steps)
            np.testing.assert_allclose(getattr(got, mode)[i], expected, atol=1e-6)
            random = hand_curve(images[i], noise, bases[i], cls, mode, steps)
            np.testing.assert_allclose(getattr(got, f"random_{mode}")[i], random, atol=1e-6)
            # and models.quality's own single-image function agrees, area included
            curve, area = saliency_curve(predict, images[i], maps[i], cls, mode, steps,
                                         bases[i])
            np.testing.assert_allclose(curve, expected, atol=1e-6)
            summary = got.summary(i)
            assert summary[f"{mode}_auc"] == pytest.approx(trapezoid(expected), abs=1e-6)
            assert summary[f"{mode}_auc"] == pytest.approx(area, abs=1e-6)
            assert len(summary[f"{mode}_curve"]) == steps + 1


def test_a_map_on_the_evidence_beats_the_random_map() -> None:
    images = scenes(4, seed=1)
    perfect = np.zeros((4, SIZE, SIZE), np.float32)
    perfect[:, :3, :3] = 1.0  # exactly the pixels the classifier reads
    got = image_curves(predict, images, perfect, [0] * 4, baseline="black", steps=16, seed=0)
    for i in range(4):
        s = got.summary(i)
        assert s["deletion_auc"] < 0.5 * s["random_deletion_auc"]
        assert s["insertion_auc"] > s["random_insertion_auc"] + 0.2
    # ranked by the signed value: the same map negated puts the evidence last
    worst = image_curves(predict, images, -perfect, [0] * 4, baseline="black", steps=16)
    assert (worst.summary(0)["deletion_auc"] > got.summary(0)["random_deletion_auc"])


def test_negative_measures_one_minus_p_and_images_do_not_affect_each_other() -> None:
    images = scenes(2, seed=2)
    maps = np.random.default_rng(3).random((2, SIZE, SIZE)).astype(np.float32)
    plain = image_curves(predict, images, maps, [0, 0], steps=4)
    negative = image_curves(predict, images, maps, [0, 0], steps=4, negative=True)
    for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
        np.testing.assert_allclose(getattr(negative, name), 1.0 - getattr(plain, name),
                                   atol=1e-6)
    alone = image_curves(predict, images[1:], maps[1:], [0], steps=4)
    for name in ("deletion", "random_insertion"):
        np.testing.assert_allclose(getattr(alone, name)[0], getattr(plain, name)[1])
    with pytest.raises(ValueError, match="do not match"):
        image_curves(predict, images, maps[:, :4], [0, 0])


def test_the_model_sees_a_bounded_number_of_frames(monkeypatch) -> None:
    """At most FRAME_PIXELS input pixels per call (here 10 frames of 8×8), same curves."""
    import models.image_quality as image_quality

    images, maps = scenes(3, seed=6), np.random.default_rng(7).random((3, SIZE, SIZE))
    whole = image_curves(predict, images, maps, [0, 1, 0], steps=6)
    sizes: list[int] = []

    def counting(frames: np.ndarray) -> np.ndarray:
        sizes.append(len(frames))
        return predict(frames)

    monkeypatch.setattr(image_quality, "FRAME_PIXELS", 10 * SIZE * SIZE)
    bounded = image_curves(counting, images, maps, [0, 1, 0], steps=6)
    assert max(sizes) == 10 and sum(sizes) == 3 * 4 * 7
    for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
        np.testing.assert_allclose(getattr(bounded, name), getattr(whole, name))
