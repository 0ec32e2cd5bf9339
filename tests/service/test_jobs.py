"""Every job kind end to end on the ``shapes`` model: HTTP submit → real Celery worker → Redis
→ HTTP result and artifacts, checked against the engine called directly in this process.

Images are 64×64 PNGs (the model's input size), so the API resizes nothing and the engine's
direct output is the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.shapes_data import generate_shapes
from tests.service.job_http import (
    artifacts,
    decode_png,
    encode,
    keras_bytes,
    load_npy,
    poll,
    run,
    submit,
    upload,
)
from worker.contract import CAM_METHODS


@pytest.fixture(scope="module")
def pair() -> np.ndarray:
    """Two 64×64 shapes images of different classes, uint8 ``(2, 64, 64, 3)``."""
    batch = generate_shapes(8, seed=11)
    first = 0
    second = next(i for i in range(1, 8) if batch.labels[i] != batch.labels[first])
    return batch.images[[first, second]]


def test_activations_two_images_match_the_engine(client, shapes_model, pair: np.ndarray) -> None:
    from models.activations import ActivationExtractor

    res = submit(client, "activations", [encode(im) for im in pair], layer="conv2")
    assert res.status_code == 202
    job_id = res.get_json()["id"]
    assert res.get_json()["status"] == "queued"
    assert res.headers["Location"] == f"/v1/jobs/{job_id}"
    waited = client.get(f"/v1/jobs/{job_id}?wait=60").get_json()
    assert waited["status"] == "succeeded", waited
    job = poll(client, job_id)
    assert job == waited
    assert (job["kind"], job["model"], job["layer"], job["progress"]) == \
        ("activations", "shapes", "conv2", 1.0)
    assert [i["resized_size"] for i in job["inputs"]] == [[64, 64], [64, 64]]

    expected = ActivationExtractor(shapes_model, "conv2")(pair.astype(np.float32))
    files = artifacts(client, job)
    assert sorted(files) == ["activations", "activations.1", "grid", "grid.1"]
    items = job["result"]["items"]
    assert len(items) == 2
    for i, item in enumerate(items):
        suffix = "" if i == 0 else f".{i}"
        assert item["artifacts"] == {"grid": "grid" + suffix,
                                     "activations": "activations" + suffix}
        acts = load_npy(files["activations" + suffix])
        assert acts.dtype == np.float32 and acts.shape == (32, 32, 32)
        assert item["shape"] == [32, 32, 32]
        np.testing.assert_allclose(acts, expected.activations[i], atol=1e-5)
        assert [c["index"] for c in item["channels"]] == list(range(32))
        np.testing.assert_allclose([c["mean"] for c in item["channels"]],
                                   acts.mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([c["max"] for c in item["channels"]], acts.max(axis=(0, 1)),
                                   rtol=1e-5, atol=1e-6)
        top = item["predictions"][0]
        assert top["index"] == int(np.argmax(expected.probs[i]))
        assert top["score"] == pytest.approx(float(expected.probs[i].max()), abs=1e-5)
        assert top["label"] in ("circle", "square", "triangle", "star", "cross", "ring")
        grid = decode_png(files["grid" + suffix])
        assert grid.shape[0] > 4 * 32 and grid.shape[1] > 4 * 32  # 32 tiles of ≥ 32 px
        assert grid.std() > 10  # not a blank canvas
    # The two images differ, so swapped items would fail the comparison above; be explicit.
    assert not np.allclose(expected.activations[0], expected.activations[1], atol=1e-3)


def test_activations_channel_subset(client, pair: np.ndarray) -> None:
    job = run(client, "activations", [encode(pair[0])], layer="conv1",
              options={"channels": [3, 0, 7]})
    item = job["result"]["items"][0]
    assert [c["index"] for c in item["channels"]] == [3, 0, 7]
    acts = load_npy(artifacts(client, job)["activations"])
    assert acts.shape == (64, 64, 16)  # the NPY keeps every channel; the grid shows three
    assert item["channels"][0]["max"] == pytest.approx(float(acts[..., 3].max()), rel=1e-5)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_gradcam_methods_match_the_engine(client, shapes_model, pair: np.ndarray,
                                          method: str) -> None:
    from models.cam import make_cam

    job = run(client, "gradcam", [encode(im) for im in pair], options={"method": method})
    assert job["layer"] == "conv4"  # the last spatial layer when none is named
    assert job["result"]["layer"] == "conv4"
    cam = make_cam(method, shapes_model, "conv4")(pair.astype(np.float32))
    probs = np.asarray(shapes_model(pair.astype(np.float32)))
    files = artifacts(client, job)
    assert sorted(files) == sorted(f"{base}{suffix}" for base in
                                   ("heatmap", "heatmap_png", "overlay") for suffix in ("", ".1"))
    for i, item in enumerate(job["result"]["items"]):
        suffix = "" if i == 0 else f".{i}"
        assert item["method"] == method
        assert item["class_index"] == int(np.argmax(probs[i])) == int(cam.class_index[i])
        assert item["predictions"][0]["index"] == item["class_index"]
        assert item["score"] == pytest.approx(float(cam.score[i]), abs=1e-4)
        heat = load_npy(files["heatmap" + suffix])
        assert heat.dtype == np.float32 and heat.shape == (64, 64)
        assert heat.min() >= 0.0 and heat.max() <= 1.0
        np.testing.assert_allclose(heat, cam.heatmaps[i], atol=2e-3)
        assert decode_png(files["heatmap_png" + suffix]).shape == (64, 64, 3)
        overlay = decode_png(files["overlay" + suffix])
        assert overlay.shape == (64, 64, 3)
        assert not np.array_equal(overlay, pair[i])  # the heatmap is blended in


def random_cnn():
    """A randomly initialised 64×64 CNN whose maps are never all zero (unlike a dead layer)."""
    import keras

    keras.utils.set_random_seed(21)
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="tanh", name="conv_a")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="tanh", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="random_cnn")


@pytest.fixture(scope="module")
def uploaded(app, tmp_path_factory):
    """``(model id, keras model)`` of :func:`random_cnn`, uploaded for this module."""
    client = app.test_client()
    model = random_cnn()
    res = upload(client, keras_bytes(model, tmp_path_factory.mktemp("upload")), "random")
    assert res.status_code == 201, res.get_json()
    yield res.get_json()["id"], model
    client.delete(f"/v1/models/{res.get_json()['id']}")


@pytest.mark.parametrize("method", CAM_METHODS)
def test_gradcam_methods_on_a_live_model(client, uploaded, pair: np.ndarray,
                                         method: str) -> None:
    """The same checks where every map is non-trivial (each scaled to reach 1)."""
    from models.cam import make_cam

    model_id, model = uploaded
    job = run(client, "gradcam", [encode(im) for im in pair], model=model_id,
              options={"method": method})
    assert job["layer"] == "conv_b"
    cam = make_cam(method, model, "conv_b")(pair.astype(np.float32))
    files = artifacts(client, job)
    for i, item in enumerate(job["result"]["items"]):
        suffix = "" if i == 0 else f".{i}"
        assert item["class_index"] == int(cam.class_index[i])
        heat = load_npy(files["heatmap" + suffix])
        assert heat.shape == (64, 64) and heat.dtype == np.float32
        assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
        np.testing.assert_allclose(heat, cam.heatmaps[i], atol=2e-3)
    maps = [load_npy(files[name]) for name in ("heatmap", "heatmap.1")]
    assert not np.allclose(maps[0], maps[1], atol=0.05)  # per-image maps, in image order


def test_gradcam_explicit_class_per_image(client, shapes_model, pair: np.ndarray) -> None:
    probs = np.asarray(shapes_model(pair.astype(np.float32)))
    lowest = [int(np.argmin(p)) for p in probs]  # never the top prediction
    job = run(client, "gradcam", [encode(im) for im in pair], layer="conv3",
              options={"class_index": lowest, "top_k": 2})
    items = job["result"]["items"]
    assert [it["class_index"] for it in items] == lowest
    assert [len(it["predictions"]) for it in items] == [2, 2]
    assert items[0]["score"] == pytest.approx(float(probs[0, lowest[0]]), abs=1e-5)


@pytest.mark.parametrize(("y", "x"), [(5, 7), (0, 0)])
def test_explain_unit_matches_the_model(client, shapes_model, pair: np.ndarray, y: int,
                                        x: int) -> None:
    from models.activations import ActivationExtractor

    job = run(client, "explain", [encode(pair[0])], layer="conv2",
              options={"filter": 3, "y": y, "x": x})
    item = job["result"]["items"][0]
    direct = ActivationExtractor(shapes_model, "conv2")(pair[:1].astype(np.float32))
    assert item["model_activation"] == pytest.approx(
        float(direct.activations[0, y, x, 3]), rel=1e-4, abs=1e-5)
    assert item["activation"] == pytest.approx(item["model_activation"], rel=1e-4, abs=1e-4)
    assert len(item["channels"]) == 16  # conv2 reads pool1's 16 channels
    sums = [c["sum"] for c in item["channels"]]
    assert item["pre_activation"] == pytest.approx(sum(sums) + item["bias"], rel=1e-6, abs=1e-6)
    kernel = shapes_model.get_layer("conv2").kernel.numpy()[..., 3]
    for c, channel in enumerate(item["channels"]):
        patch = np.asarray(channel["patch"])
        assert patch.shape == (3, 3)
        np.testing.assert_allclose(channel["kernel"], kernel[..., c], rtol=1e-6)
        assert channel["sum"] == pytest.approx(float((patch * kernel[..., c]).sum()), abs=1e-5)
        if (y, x) == (0, 0):  # "same" padding: the top row and left column are zeros
            assert not patch[0].any() and not patch[:, 0].any()
    assert max(abs(v) for c in item["channels"] for v in np.ravel(c["patch"])) > 0


def _filters(client, seeds: list[int]) -> list[tuple[dict, dict[str, bytes]]]:
    """Run one small filters job per seed (all queued at once); their jobs and artifacts."""
    ids = []
    for seed in seeds:
        res = submit(client, "filters", layer="conv2",
                     options={"filters": [0, 5, 9], "steps": 8, "size": 32, "seed": seed})
        assert res.status_code == 202
        ids.append(res.get_json()["id"])
    jobs = [poll(client, job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * len(seeds), jobs
    return [(j, artifacts(client, j)) for j in jobs]


def test_filters_are_deterministic_per_seed(client) -> None:
    (first, files), (again, files_again), (other, files_other) = _filters(client, [3, 3, 4])
    assert first["progress"] == 1.0
    assert sorted(files) == ["filter_0", "filter_5", "filter_9", "grid"]
    result = first["result"]
    assert [f["index"] for f in result["filters"]] == [0, 5, 9]
    assert all(isinstance(f["activation"], float) for f in result["filters"])
    for name in ("filter_0", "filter_5", "filter_9"):
        assert decode_png(files[name]).shape == (32, 32, 3)
    grid = decode_png(files["grid"])
    assert grid.shape[0] > 32 and grid.shape[1] > 2 * 32
    np.testing.assert_array_equal(grid, decode_png(files_again["grid"]))
    assert again["result"]["filters"] == result["filters"]
    assert not np.array_equal(decode_png(files["filter_0"]), decode_png(files_other["filter_0"]))
