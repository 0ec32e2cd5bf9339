"""The worker: TensorFlow lives only in its child processes, and a job that blows up inside
the engine ends ``failed`` with a code while the worker goes on serving."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from tests.service.job_http import assert_problem, encode, keras_bytes, poll, run, submit, upload

TF_LIBRARIES = ("libtensorflow", "_pywrap_tensorflow")


def tf_mapped(pid: int) -> bool:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return any(lib in maps for lib in TF_LIBRARIES)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_tensorflow_only_in_worker_children(client, worker) -> None:
    run(client, "activations", [encode(np.full((64, 64, 3), 40, np.uint8))], layer="conv1")
    assert worker.poll() is None
    assert b"celery" in Path(f"/proc/{worker.pid}/cmdline").read_bytes()
    assert not tf_mapped(worker.pid)
    kids = children(worker.pid)
    assert kids, "the prefork pool has no child processes"
    assert any(tf_mapped(kid) for kid in kids)


def free_size_model():
    """Any-size RGB input → Conv2D 5×5 valid → GAP → Dense(2): needs at least 5×5 pixels."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(3, 5, padding="valid", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="free_size")


def test_engine_failure_fails_the_job_not_the_worker(client, worker, tmp_path: Path) -> None:
    res = upload(client, keras_bytes(free_size_model(), tmp_path), name="free-size")
    assert res.status_code == 201, res.get_json()
    model_id = res.get_json()["id"]
    assert res.get_json()["input_shape"] == [None, None, 3]
    pool = sorted(children(worker.pid))
    try:
        # A 2×2 image passes every API check (free spatial size) but cannot pass a 5×5 kernel.
        tiny = encode(np.full((2, 2, 3), 128, np.uint8))
        for kind, options in (("activations", {}), ("gradcam", {}),
                              ("explain", {"filter": 1})):
            res = submit(client, kind, [tiny], model=model_id, layer="conv", options=options)
            assert res.status_code == 202, res.get_json()
            job = poll(client, res.get_json()["id"])
            assert job["status"] == "failed", job
            assert job["error"]["code"] and job["error"]["message"]
            assert job["result"] is None and job["artifacts"] == []
        # The same model with a big enough image works, and so does the next shapes job.
        ok = run(client, "activations", [encode(np.full((9, 7, 3), 128, np.uint8))],
                 model=model_id, layer="conv")
        assert ok["result"]["items"][0]["shape"] == [5, 3, 3]
        run(client, "gradcam", [encode(np.full((64, 64, 3), 128, np.uint8))])
        assert worker.poll() is None
        assert sorted(children(worker.pid)) == pool  # no child died on the way
    finally:
        assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert_problem(client.get(f"/v1/models/{model_id}"), 404, "unknown_model")
