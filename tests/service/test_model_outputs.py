"""Models whose output is not one score vector: a fully-convolutional (segmentation) model,
whose ``(H, W, K)`` output scores class ``k`` of an image by its mean over the positions,
and a model with two outputs, whose first output is the one explained everywhere. Both
are uploaded to the real API and computed by a real worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.service.job_http import encode, keras_bytes, load_npy, poll, run, submit, upload

SIDE = 16


def _fcn():
    """conv (3×3, 4, relu) → seg (1×1, 3 classes, softmax per pixel): no Dense head."""
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    outputs = keras.layers.Conv2D(3, 1, activation="softmax", name="seg")(x)
    return keras.Model(inputs, outputs, name="fcn")


def _two_heads():
    """conv → gap → head_a (3 classes) and head_b (5), head_a the first output."""
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    head_a = keras.layers.Dense(3, activation="softmax", name="head_a")(x)
    head_b = keras.layers.Dense(5, activation="softmax", name="head_b")(x)
    return keras.Model(inputs, [head_a, head_b], name="two_heads")


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


def _reference(model, pixels: np.ndarray) -> tuple[np.ndarray, int, int, np.ndarray]:
    """NumPy: conv's maps ``A``, the class with the highest mean probability (the top
    prediction), the one with the highest mean logit (Grad-CAM's default), and its Grad-CAM
    on conv for the score ``mean over positions of seg's logit k``, whose gradient at every
    position is ``W[:, k] / (H·W)`` (seg is 1×1)."""
    kernel, bias = (w.astype(np.float64) for w in model.get_layer("conv").get_weights())
    x = np.pad(pixels.astype(np.float64) / 255, ((1, 1), (1, 1), (0, 0)))
    patches = np.stack([x[i:i + SIDE, j:j + SIDE] for i in range(3) for j in range(3)], 2)
    acts = np.maximum(np.einsum("hwpc,pcf->hwf", patches, kernel.reshape(9, 3, 4)) + bias, 0)
    w_seg, b_seg = (w.astype(np.float64) for w in model.get_layer("seg").get_weights())
    logits = acts @ w_seg.reshape(4, 3) + b_seg
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    top = int(np.argmax(probs.mean(axis=(0, 1))))
    k = int(np.argmax(logits.mean(axis=(0, 1))))
    cam = np.maximum(acts @ (w_seg.reshape(4, 3)[:, k] / SIDE**2), 0)
    low, high = cam.min(), cam.max()
    return acts, top, k, (cam - low) / (high - low) if high > low else np.zeros_like(cam)


def test_a_fully_convolutional_model_is_explained_by_its_mean_score(
        client, tmp_path: Path, pixels: np.ndarray) -> None:
    model = _fcn()
    res = upload(client, keras_bytes(model, tmp_path), name="fcn")
    assert res.status_code == 201 and res.get_json()["status"] == "ready", res.get_json()
    model_id = res.get_json()["id"]
    acts, top, k, cam = _reference(model, pixels)

    job = run(client, "gradcam", [encode(pixels)], model=model_id)  # was internal_error
    assert job["layer"] == "conv"  # the last spatial layer before the output, not seg
    item = job["result"]["items"][0]
    assert item["class_index"] == k
    heatmap = load_npy(client.get(f"/v1/jobs/{job['id']}/artifacts/heatmap").data)
    np.testing.assert_allclose(heatmap, cam, atol=2e-4)

    job = run(client, "activations", [encode(pixels)], model=model_id, layer="conv")
    got = load_npy(client.get(f"/v1/jobs/{job['id']}/artifacts/activations").data)
    np.testing.assert_allclose(got, acts, atol=1e-4)
    assert job["result"]["items"][0]["predictions"][0]["index"] == top
    job = run(client, "saliency", [encode(pixels)], model=model_id,
              options={"method": "gradients"})
    assert job["result"]["items"][0]["class_index"] == k


def test_the_first_of_two_outputs_is_the_one_explained(
        client, tmp_path: Path, pixels: np.ndarray) -> None:
    model = _two_heads()
    res = upload(client, keras_bytes(model, tmp_path), name="two_heads")
    assert res.status_code == 201, res.get_json()
    model_id = res.get_json()["id"]
    job = run(client, "filters", [], model=model_id,
              options={"objective": "class", "filters": [2], "steps": 2})
    assert job["layer"] == "head_a"  # the first output's layer (was head_b, the table's last)
    res = submit(client, "filters", [], model=model_id,
                 options={"objective": "class", "filters": [4], "steps": 2})
    assert res.status_code == 400, res.get_json()  # head_a has 3 classes
    job = run(client, "gradcam", [encode(pixels)], model=model_id)
    item = job["result"]["items"][0]
    head_a = keras_predict(model, pixels)
    assert item["class_index"] == int(np.argmax(head_a))
    assert [p["index"] for p in item["predictions"]] == list(np.argsort(-head_a)[:3])


def keras_predict(model, pixels: np.ndarray) -> np.ndarray:
    """The first output for one image, from Keras itself (not the engine's probe)."""
    return np.asarray(model(pixels[None].astype("float32"))[0])[0]


def test_an_image_too_small_for_a_free_size_model_is_the_users_error(
        client, tmp_path: Path) -> None:
    from tests.models.tiny_models import free_size

    res = upload(client, keras_bytes(free_size(False), tmp_path), name="free")
    assert res.status_code == 201, res.get_json()
    model_id = res.get_json()["id"]
    rng = np.random.default_rng(0)
    small, fits = (rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for side in (7, 8))
    for kind in ("activations", "gradcam", "saliency", "explain"):
        layer = "conv2" if kind in ("activations", "explain") else None
        job = poll(client, submit(client, kind, [encode(small)], model=model_id,
                                  layer=layer).get_json()["id"])
        assert job["status"] == "failed", job  # was internal_error, TensorFlow's traceback
        assert job["error"]["code"] == "invalid_input", job["error"]
        message = job["error"]["message"]
        assert "(7×7) cannot go through the model: layer 'conv2'" in message
        assert "zero or negative" in message
    assert run(client, "gradcam", [encode(fits)], model=model_id)["status"] == "succeeded"
    # raised inside a compiled step: autograph's StagingError held the engine's own error
    job = poll(client, submit(client, "filters", [], model=model_id, layer="conv2", options={
        "objective": "neuron", "filters": [0], "steps": 2, "y": 500, "x": 500}).get_json()["id"])
    assert job["error"]["code"] == "invalid_input", job["error"]
    assert job["error"]["message"].startswith("neuron (y=500, x=500) is outside")
