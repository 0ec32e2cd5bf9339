"""Filters jobs with an ``objective`` end to end (API, Redis, a real worker): each objective's
patterns equal the engine's in-process result, a channel that never fires comes back
``dead: true``, another objective (or its parameters) is never answered from the cache of
another, and bad objective options are refused before anything is queued."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.service.job_http import (
    QueueCount,
    artifacts,
    assert_problem,
    decode_png,
    keras_bytes,
    run,
    submit,
    upload,
)
from worker import filter_cache as fc

FAST = {"steps": 6, "size": 16}
DEAD = 5  # the channel whose bias is −100


def _model():
    """16×16 RGB: conv (8 filters 3×3, same, relu; positive weights, bias +0.1 but channel
    DEAD's −100: it never fires) → GAP → head Dense(3, softmax)."""
    import keras

    keras.utils.set_random_seed(21)
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    conv = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(conv(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))
    conv.kernel.assign(np.abs(conv.kernel.numpy()))
    conv.bias.assign(np.where(np.arange(8) == DEAD, -100.0, 0.1).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def model_id(app, tmp_path_factory: pytest.TempPathFactory) -> str:
    res = upload(app.test_client(), keras_bytes(_model(), Path(tmp_path_factory.mktemp("obj"))),
                 name=f"objectives-{uuid.uuid4().hex[:8]}")
    assert res.status_code == 201, res.get_json()
    return res.get_json()["id"]


@pytest.fixture(scope="module")
def r(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def _computed(r: redis.Redis) -> int:
    return int(r.hget(fc.STATS, "computed") or 0)


CASES = [  # (layer, job options, the engine's objective and parameters)
    ("conv", {"objective": "channel", "filters": [0, DEAD, 3]}, ("channel", {})),
    ("conv", {"objective": "neuron", "filters": [1, 2], "y": 3, "x": 12},
     ("neuron", {"y": 3, "x": 12})),
    ("conv", {"objective": "neuron", "filters": [1]}, ("neuron", {"y": 8, "x": 8})),
    ("head", {"objective": "class", "filters": [2, 0]}, ("class", {})),
    ("conv", {"objective": "negative", "filters": [4]}, ("negative", {})),
    ("conv", {"objective": "diversity", "filters": [6], "n": 3, "diversity_weight": 5.0},
     ("diversity", {"n": 3, "weight": 5.0})),
]


@pytest.mark.parametrize("layer, options, engine", CASES,
                         ids=[f"{c[1]['objective']}-{i}" for i, c in enumerate(CASES)])
def test_each_objective_matches_the_engine(client, model_id, layer: str, options: dict,
                                           engine: tuple) -> None:
    from models.filters import AscentOptions, FilterVisualizer
    from models.filters.objectives import make_objective

    seed = 100 + CASES.index((layer, options, engine))  # nothing cached by another test
    job = run(client, "filters", model=model_id, layer=layer,
              options={**FAST, **options, "seed": seed})
    result, files = job["result"], artifacts(client, job)
    assert result["objective"] == options["objective"] and job["layer"] == layer
    expected = FilterVisualizer(_model(), layer).run(
        options["filters"], AscentOptions(**FAST, seed=seed),
        objective=make_objective(engine[0], **engine[1]))
    assert [f["index"] for f in result["filters"]] == expected.filters
    for i, entry in enumerate(result["filters"]):
        got = decode_png(files[entry["artifact"]]).astype(int)
        assert np.abs(got - expected.images[i].astype(int)).max() <= 1, entry
        assert entry["dead"] == bool(expected.dead[i]) and entry["cached"] is False
    np.testing.assert_allclose([f["activation"] for f in result["filters"]],
                               expected.activation, rtol=1e-4, atol=1e-5)
    if options["objective"] == "diversity":
        assert [f["copy"] for f in result["filters"]] == [0, 1, 2]
        assert sorted(files) == ["filter_6_0", "filter_6_1", "filter_6_2", "grid"]
    if "y" not in options and options["objective"] == "neuron":
        assert (job["options"]["y"], job["options"]["x"]) == (8, 8)  # the centre, filled in


def test_a_channel_that_never_fires_is_reported_dead(client, model_id) -> None:
    job = run(client, "filters", model=model_id, layer="conv",
              options={**FAST, "filters": list(range(8)), "seed": 90})
    entries = job["result"]["filters"]
    assert [f["dead"] for f in entries] == [f == DEAD for f in range(8)]
    assert entries[DEAD]["activation"] == 0.0
    assert all(f["activation"] > 0 for f in entries if f["index"] != DEAD)
    again = run(client, "filters", model=model_id, layer="conv",
                options={**FAST, "filters": [DEAD, 0], "seed": 90})
    assert [(f["cached"], f["dead"]) for f in again["result"]["filters"]] == \
        [(True, True), (True, False)]  # the cache keeps it


def test_a_class_job_without_a_layer_takes_the_models_last_layer(client, model_id) -> None:
    job = run(client, "filters", model=model_id,
              options={**FAST, "objective": "class", "seed": 91})
    assert job["layer"] == "head" and job["options"]["filters"] == [0, 1, 2]


def test_another_objective_is_never_answered_from_the_cache(client, r, model_id) -> None:
    def computed_by(options: dict) -> tuple[int, list[bool]]:
        before = _computed(r)
        job = run(client, "filters", model=model_id, layer="conv",
                  options={**FAST, "filters": [0, 1], "seed": 92, **options})
        return _computed(r) - before, [f["cached"] for f in job["result"]["filters"]]

    assert computed_by({}) == (2, [False, False])
    assert computed_by({}) == (0, [True, True])
    for options in ({"objective": "negative"}, {"objective": "neuron", "y": 2, "x": 2},
                    {"objective": "neuron", "y": 2, "x": 3}):
        assert computed_by(options) == (2, [False, False]), options
        assert computed_by(options) == (0, [True, True]), options
    diverse = {"objective": "diversity", "filters": [0], "n": 2}
    assert computed_by(diverse) == (2, [False, False])
    assert computed_by({**diverse, "diversity_weight": 1.0}) == (2, [False, False])
    assert computed_by(diverse) == (0, [True, True])


BAD = [  # (layer, options, code, a fragment of the detail)
    ("conv", {"objective": "blob"}, "invalid_options", "objective must be one of"),
    ("conv", {"objective": "neuron", "y": 16}, "position_out_of_range", "y=16"),
    ("conv", {"objective": "neuron", "x": -1}, "position_out_of_range", "x=-1"),
    ("head", {"objective": "class", "filters": [3]}, "class_out_of_range", "filters=3"),
    ("conv", {"objective": "diversity", "n": 17}, "invalid_options", "n=17"),
    ("conv", {"objective": "diversity", "n": 1}, "invalid_options", "n=1"),
    ("conv", {"objective": "diversity", "diversity_weight": -1}, "invalid_options",
     "diversity_weight"),
    ("conv", {"objective": "diversity", "filters": [0, 1]}, "invalid_options", "one channel"),
    ("head", {"objective": "channel"}, "layer_not_spatial", "objective 'class' only"),
    ("head", {}, "layer_not_spatial", "H×W×C"),
    ("conv", {"objective": "class"}, "layer_not_flat", "flat"),
    ("conv", {"y": 3}, "invalid_options", "objective 'channel'"),
    ("conv", {"objective": "negative", "n": 3}, "invalid_options", "n do(es) not apply"),
]


@pytest.mark.parametrize("layer, options, code, fragment", BAD)
def test_bad_objective_options_are_refused_before_anything_is_queued(
        client, r, model_id, layer: str, options: dict, code: str, fragment: str) -> None:
    before = QueueCount.read(r)
    body = assert_problem(submit(client, "filters", model=model_id, layer=layer,
                                 options={**FAST, **options}), 400, code)
    assert fragment in body["detail"], body
    assert QueueCount.read(r) == before
