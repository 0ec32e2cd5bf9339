"""Models with random weights are marked as such, in the model list and in every result."""

from __future__ import annotations

import numpy as np

from tests.service.job_http import encode, run


def test_random_weights_are_marked(client) -> None:
    cifar = client.get("/v1/models/cifar10?wait=60").get_json()
    shapes = client.get("/v1/models/shapes?wait=60").get_json()
    assert cifar["random_weights"] is True  # not trained in the test data dir
    assert shapes["random_weights"] is False
    listed = {m["id"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert listed["cifar10"]["random_weights"] is True

    image = encode(np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    job = run(client, "gradcam", [image], model="cifar10")
    assert job["result"]["random_weights"] is True
    assert job["layer"] == "pool2"  # the last layer with a spatial output before the head
    again = run(client, "gradcam", [image], model="cifar10")
    assert again["result"]["items"][0]["class_index"] == job["result"]["items"][0]["class_index"]
    shapes_job = run(client, "activations", [encode(np.zeros((64, 64, 3), np.uint8))],
                     layer="conv1")
    assert shapes_job["result"]["random_weights"] is False
