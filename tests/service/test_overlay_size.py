"""Overlays come back at the size the image was sent; the model gets it squashed."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from service.images import decode_image
from tests.service.job_http import encode, load_npy, run


def test_overlay_is_drawn_at_the_original_size(client) -> None:
    rng = np.random.default_rng(4)
    photo = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)  # 120 wide, 90 high
    job = run(client, "gradcam", [encode(photo)])
    item = job["result"]["items"][0]
    assert item["overlay_size"] == [90, 120] and item["resize"] == "squash"
    assert job["inputs"][0]["original_size"] == [90, 120]
    assert job["inputs"][0]["resized_size"] == [64, 64]
    heat = load_npy(client.get(f"/v1/jobs/{job['id']}/artifacts/heatmap").data)
    assert heat.shape == (64, 64)
    with Image.open(io.BytesIO(client.get(f"/v1/jobs/{job['id']}/artifacts/overlay").data)) as o:
        assert o.size == (120, 90)
        overlay = np.asarray(o.convert("RGB"), dtype=np.float32)
    # The overlay is 55 % the photo: where the photo is brighter, so is the overlay.
    assert np.corrcoef(overlay.mean(-1).ravel(), photo.mean(-1).ravel())[0, 1] > 0.5


def test_a_same_size_image_keeps_no_second_copy(client) -> None:
    job = run(client, "gradcam", [encode(np.zeros((64, 64, 3), np.uint8))])
    assert job["inputs"][0]["original_stored"] is False
    assert job["result"]["items"][0]["overlay_size"] == [64, 64]


def test_large_originals_are_scaled_down_for_display() -> None:
    image = encode(np.full((300, 400, 3), 200, np.uint8))
    decoded = decode_image(image, [64, 64, 3], max_pixels=10**6, max_display_pixels=30_000)
    assert decoded.pixels.shape == (64, 64, 3)
    h, w = decoded.original.shape[:2]
    assert h * w <= 30_000 and abs(w / h - 4 / 3) < 0.02  # aspect ratio kept


def test_only_overlay_jobs_keep_the_original(client) -> None:
    photo = encode(np.random.default_rng(5).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    acts = run(client, "activations", [photo], layer="conv1")
    assert acts["inputs"][0]["original_stored"] is False
    cam = run(client, "gradcam", [photo])
    assert cam["inputs"][0]["original_stored"] is True


def test_a_free_size_model_takes_each_image_at_its_size(client, tmp_path) -> None:
    import keras

    from tests.service.job_http import keras_bytes, upload

    keras.utils.set_random_seed(6)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name="anysize")
    res = upload(client, keras_bytes(model, tmp_path), name=f"anysize-{tmp_path.name[-8:]}")
    assert res.status_code == 201, res.get_json()
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in
              [(20, 24, 3), (16, 16, 3), (20, 24, 3)]]
    job = run(client, "gradcam", [encode(i) for i in images], model=res.get_json()["id"])
    for i, image in enumerate(images):
        name = "heatmap" if i == 0 else f"heatmap.{i}"
        heat = load_npy(client.get(f"/v1/jobs/{job['id']}/artifacts/{name}").data)
        assert heat.shape == image.shape[:2]
        assert job["result"]["items"][i]["resize"] == "none"
