"""Kind ``saliency`` end to end (API, Redis, a real worker): every method's attribution equals
the engine's own in-process result, with its artifacts; targets per image and ``negative``;
bad options are refused with problem+json before anything is queued."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from models.shapes_data import generate_shapes
from tests.service.job_http import (
    QueueCount,
    artifacts,
    assert_problem,
    decode_png,
    encode,
    load_npy,
    run,
    submit,
)
from worker.contract import OPTION_DEFAULTS, SALIENCY_METHODS

# Small but real settings, so each job takes a fraction of a second on the shapes model.
FAST = {"samples": 6, "steps": 24, "window": 16, "stride": 8}


@pytest.fixture(scope="module")
def pair() -> np.ndarray:
    """Two 64×64 shapes images of different classes, uint8 ``(2, 64, 64, 3)``."""
    batch = generate_shapes(8, seed=5)
    second = next(i for i in range(1, 8) if batch.labels[i] != batch.labels[0])
    return batch.images[[0, second]]


@pytest.fixture(scope="module")
def r(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def engine(model, method: str, images: np.ndarray, **options) -> np.ndarray:
    from models.saliency import make_saliency, reduce_channels

    defaults = {k: v for k, v in OPTION_DEFAULTS["saliency"].items()
                if k in _takes(method) and v is not None}  # baseline None: the method's own
    options = {**defaults, **{k: v for k, v in FAST.items() if k in _takes(method)}, **options}
    if method == "guided_gradcam":
        options["layer"] = "conv4"
    class_index = options.pop("class_index", None)
    res = make_saliency(method, model, "raw", **options)(images.astype(np.float32),
                                                          class_index=class_index)
    return reduce_channels(res.maps, "sum")


def _takes(method: str) -> tuple[str, ...]:
    from worker.saliency_kind import METHOD_OPTIONS

    return METHOD_OPTIONS[method]


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_each_method_matches_the_engine(client, shapes_model, pair, method: str) -> None:
    job = run(client, "saliency", [encode(im) for im in pair],
              options={"method": method, **FAST})
    assert job["layer"] == "conv4"  # the last spatial layer (guided Grad-CAM's) by default
    files = artifacts(client, job)
    assert sorted(files) == sorted(f"{base}{suffix}" for base in
                                   ("attribution", "attribution_png", "overlay")
                                   for suffix in ("", ".1"))
    expected = engine(shapes_model, method, pair)
    probs = np.asarray(shapes_model(pair.astype(np.float32)))
    for i, item in enumerate(job["result"]["items"]):
        suffix = "" if i == 0 else f".{i}"
        assert (item["method"], item["target"]) == (method, "class")
        assert item["class_index"] == int(np.argmax(probs[i]))
        assert item["predictions"][0]["index"] == item["class_index"]
        got = load_npy(files["attribution" + suffix])
        assert got.dtype == np.float32 and got.shape == (64, 64)
        scale = float(np.abs(expected[i]).max())
        assert scale > 0, "an all-zero attribution says nothing"
        np.testing.assert_allclose(got, expected[i], atol=2e-3 * scale, rtol=1e-3)
        assert item["sum"] == pytest.approx(float(got.sum()), rel=1e-4, abs=1e-6)
        assert decode_png(files["attribution_png" + suffix]).shape == (64, 64, 3)
        assert decode_png(files["overlay" + suffix]).shape == (64, 64, 3)
    if method == "integrated_gradients":  # f(x) - f(baseline), and how far the sum is from it
        item = job["result"]["items"][0]
        assert {"completeness_gap", "score_gain"} <= set(item)
        assert item["sum"] == pytest.approx(item["score_gain"], rel=0.05)
        for item in job["result"]["items"]:  # refined until within 1 % (the default)
            assert isinstance(item["steps"], int) and item["steps"] >= FAST["steps"]
            assert item["completeness_gap"] <= 0.01 or item["steps"] == 1024, item


def test_the_diverging_picture_is_red_for_positive_and_blue_for_negative(client, pair) -> None:
    job = run(client, "saliency", [encode(pair[0])], options={"method": "gradients"})
    files = artifacts(client, job)
    signed = load_npy(files["attribution"])
    picture = decode_png(files["attribution_png"]).astype(int)
    top, bottom = np.unravel_index(signed.argmax(), signed.shape), \
        np.unravel_index(signed.argmin(), signed.shape)
    assert picture[top][0] > picture[top][2]  # most positive: red over blue
    assert picture[bottom][2] > picture[bottom][0]  # most negative: blue over red


def test_targets_per_image_and_negative(client, shapes_model, pair) -> None:
    chosen = [2, 0]
    job = run(client, "saliency", [encode(im) for im in pair],
              options={"method": "gradients", "class_index": chosen, "target": "negative"})
    files = artifacts(client, job)
    expected = engine(shapes_model, "gradients", pair, class_index=chosen)
    for i, item in enumerate(job["result"]["items"]):
        assert (item["class_index"], item["target"]) == (chosen[i], "negative")
        got = load_npy(files["attribution" if i == 0 else f"attribution.{i}"])
        scale = float(np.abs(expected[i]).max())
        np.testing.assert_allclose(got, -expected[i], atol=2e-3 * scale)  # linear in the score


@pytest.mark.parametrize(("options", "fragment"), [
    ({"method": "lime"}, "method must be one of"),
    ({"target": "other"}, "target must be one of"),
    ({"method": "integrated_gradients", "baseline": "grey"}, "baseline must be one of"),
    ({"method": "occlusion", "window": 4, "stride": 8}, "stride=8 is out of range 1..4"),
    ({"method": "occlusion", "window": 65}, "window=65 is out of range"),
    ({"noise": 2}, "noise must be a number in 0..1"),
    ({"samples": 0}, "samples=0 is out of range"),
    ({"steps": 100000}, "out of range"),
    ({"steps": 64, "max_steps": 32}, "max_steps=32 is out of range 64..4096"),
    ({"tolerance": 2}, "tolerance must be a number in 0..1"),
    ({"sigma": 0.1}, "unknown option"),
    ({"class_index": 99}, "class_index=99"),
])
def test_bad_options_are_refused_before_anything_is_queued(client, r, pair, options: dict,
                                                           fragment: str) -> None:
    before = QueueCount.read(r)
    res = submit(client, "saliency", [encode(pair[0])], options=options)
    code = "class_out_of_range" if "class_index" in options else "invalid_options"
    body = assert_problem(res, 400, code)
    assert fragment in body["detail"], body
    assert QueueCount.read(r) == before
