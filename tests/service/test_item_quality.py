"""The ``quality`` option of gradcam and saliency jobs, Grad-CAM's ``negative`` target and
binary sigmoid models, end to end (API, Redis, a real worker): each item's AUCs equal
models/quality.py's curves computed here on the job's own map artifact; bad options are
refused before anything is queued; batched quality jobs get what they get alone."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service import test_saliency_jobs
from tests.service.job_http import (
    QueueCount,
    artifacts,
    assert_problem,
    decode_png,
    encode,
    keras_bytes,
    load_npy,
    poll,
    run,
    submit,
    upload,
)
from worker.contract import QUALITY_OPTION_DEFAULTS

pair, r = test_saliency_jobs.pair, test_saliency_jobs.r  # its fixtures: two shapes images, Redis

KEYS = {"deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
        "baseline", "steps", "seed"}


def reference(model, image: np.ndarray, heat: np.ndarray, cls: int, quality: dict,
              negative: bool = False) -> dict[str, float]:
    """The four areas by models/quality.py's single-image function on the model itself."""
    from models.quality import baseline_images, random_map, saliency_curve

    def predict(x: np.ndarray) -> np.ndarray:
        probs = np.asarray(model(x.astype(np.float32)), np.float64)
        return 1.0 - probs if negative else probs

    x = image.astype(np.float32)
    base = baseline_images(x[None], quality["baseline"])[0]
    noise = random_map(heat.shape, quality["seed"], 0)
    out = {}
    for prefix, ranking in (("", heat), ("random_", noise)):
        for mode in ("deletion", "insertion"):
            _, out[f"{prefix}{mode}_auc"] = saliency_curve(predict, x, ranking, cls, mode,
                                                           quality["steps"], base)
    return out


def assert_areas(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=2e-4), key


@pytest.mark.parametrize("quality", [True, {"baseline": "black", "steps": 6, "seed": 3}])
def test_gradcam_quality_equals_the_curves_of_its_heatmap(client, shapes_model, pair,
                                                          quality) -> None:
    job = run(client, "gradcam", [encode(im) for im in pair], options={"quality": quality})
    assert job["status"] == "succeeded", job
    chosen = {**QUALITY_OPTION_DEFAULTS, **(quality if isinstance(quality, dict) else {})}
    assert job["options"]["quality"] == chosen
    files = artifacts(client, job)
    assert {"quality_curves", "quality_curves.1"} <= set(files)
    for i, item in enumerate(job["result"]["items"]):
        suffix = "" if i == 0 else f".{i}"
        q = item["quality"]
        assert KEYS <= set(q) and {k: q[k] for k in chosen} == chosen
        assert (q["ranked_by"], q["probability"]) == ("heatmap", "p(class)")
        assert len(q["deletion_curve"]) == len(q["random_insertion_curve"]) == chosen["steps"] + 1
        heat = load_npy(files["heatmap" + suffix])
        assert_areas(q, reference(shapes_model, pair[i], heat, item["class_index"], chosen))
        assert item["artifacts"]["quality_curves"] == "quality_curves" + suffix
        assert decode_png(files["quality_curves" + suffix]).shape[2] == 3


def test_saliency_quality_ranks_by_the_signed_attribution(client, shapes_model, pair) -> None:
    quality = {"steps": 8}
    job = run(client, "saliency", [encode(pair[0])],
              options={"method": "gradients", "quality": quality, "target": "negative"})
    item = job["result"]["items"][0]
    q = item["quality"]
    assert (q["ranked_by"], q["probability"]) == ("signed attribution", "1 - p(class)")
    signed = load_npy(artifacts(client, job)["attribution"])
    assert signed.min() < 0 < signed.max()
    chosen = {**QUALITY_OPTION_DEFAULTS, **quality}
    expected = reference(shapes_model, pair[0], signed, item["class_index"], chosen,
                         negative=True)
    assert_areas(q, expected)
    p = float(np.asarray(shapes_model(pair[:1].astype(np.float32)))[0, item["class_index"]])
    assert q["deletion_curve"][0] == pytest.approx(1.0 - p, abs=1e-5)  # nothing deleted yet
    by_magnitude = reference(shapes_model, pair[0], np.abs(signed), item["class_index"], chosen,
                             negative=True)
    assert q["deletion_auc"] != pytest.approx(by_magnitude["deletion_auc"], abs=1e-4)


def test_without_quality_there_is_none(client, pair) -> None:
    job = run(client, "gradcam", [encode(pair[0])])
    assert job["options"]["quality"] is False and job["options"]["target"] == "class"
    assert "quality" not in job["result"]["items"][0]
    assert not any(name.startswith("quality") for name in job["artifacts"])


def test_negative_gradcam_through_the_worker(client, shapes_model, pair) -> None:
    from models.cam import make_cam

    chosen = [1, 2]
    job = run(client, "gradcam", [encode(im) for im in pair],
              options={"target": "negative", "class_index": chosen})
    files = artifacts(client, job)
    expected = make_cam("gradcam", shapes_model, "conv4", target="negative")(
        pair.astype(np.float32), class_index=chosen).heatmaps
    for i, item in enumerate(job["result"]["items"]):
        assert (item["class_index"], item["target"]) == (chosen[i], "negative")
        np.testing.assert_allclose(load_npy(files["heatmap" if i == 0 else f"heatmap.{i}"]),
                                   expected[i], atol=1e-5)


@pytest.mark.parametrize(("kind", "options", "fragment"), [
    ("gradcam", {"quality": "yes"}, "quality must be true, false or an object"),
    ("gradcam", {"quality": {"steps": 0}}, "quality steps=0 is out of range 1..128"),
    ("saliency", {"quality": {"steps": 129}}, "quality steps=129 is out of range 1..128"),
    ("gradcam", {"quality": {"baseline": "grey"}}, "quality baseline must be one of blur, black"),
    ("saliency", {"quality": {"window": 3}}, "unknown quality field(s) window"),
    ("gradcam", {"quality": {"seed": -1}}, "quality seed=-1 is out of range"),
    ("gradcam", {"quality": {"steps": 2.5}}, "quality steps must be an integer"),
    ("gradcam", {"target": "other"}, "target must be one of class, negative"),
    ("gradcam", {"method": "eigencam", "target": "negative"}, "eigencam does not depend on"),
])
def test_bad_options_are_refused_before_anything_is_queued(client, r, pair, kind: str,
                                                           options: dict, fragment: str) -> None:
    before = QueueCount.read(r)
    body = assert_problem(submit(client, kind, [encode(pair[0])], options=options), 400,
                          "invalid_options")
    assert fragment in body["detail"], body
    assert QueueCount.read(r) == before


def sigmoid_model():
    """16×16 RGB: conv (4, relu) → GAP → Dense(1, sigmoid), bias set so p is near 0.5."""
    import keras

    keras.utils.set_random_seed(8)
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    return keras.Model(inputs, outputs, name="binary")


def test_a_binary_sigmoid_model_explained_both_ways(client, tmp_path) -> None:
    model = sigmoid_model()
    res = upload(client, keras_bytes(model, tmp_path), name="binary")
    assert res.status_code == 201, res.get_json()
    model_id = res.get_json()["id"]
    image = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    p = float(np.asarray(model(image[None].astype(np.float32)))[0, 0])
    zero = run(client, "gradcam", [encode(image)], model=model_id,
               options={"class_index": 0, "quality": {"steps": 4}})
    counter = run(client, "gradcam", [encode(image)], model=model_id,
                  options={"class_index": 1, "target": "negative"})
    top = run(client, "saliency", [encode(image)], model=model_id)
    item = zero["result"]["items"][0]
    assert {q["index"]: q["score"] for q in item["predictions"]} == pytest.approx(
        {0: 1.0 - p, 1: p}, abs=1e-5)
    assert item["score"] == pytest.approx(1.0 - p, abs=1e-5)
    assert item["quality"]["deletion_curve"][0] == pytest.approx(1.0 - p, abs=1e-5)
    np.testing.assert_allclose(load_npy(artifacts(client, zero)["heatmap"]),
                               load_npy(artifacts(client, counter)["heatmap"]), atol=1e-5)
    assert top["result"]["items"][0]["class_index"] == int(p > 0.5)
    bad = submit(client, "gradcam", [encode(image)], model=model_id, options={"class_index": 2})
    assert_problem(bad, 400, "class_out_of_range")
    client.delete(f"/v1/models/{model_id}")


def test_quality_jobs_batched_together_get_their_own_results(settings, tmp_path) -> None:
    from tests.service.test_batching import behind_a_busy_worker, images, own_worker

    quality = {"steps": 4}
    specs = [{"images": images(2, 21), "options": {"quality": quality}},
             {"images": images(1, 22), "options": {"quality": quality, "class_index": 1}}]
    with own_worker(settings, tmp_path, 12) as (client, _r, _):
        blocker, ids = behind_a_busy_worker(client, _r, specs)
        client.delete(f"/v1/jobs/{blocker}")
        batched = [poll(client, i, 180) for i in ids]
        assert [j["batch"] for j in batched] == [2, 2]
        for spec, job in zip(specs, batched, strict=True):
            alone = run(client, "gradcam", [encode(i) for i in spec["images"]],
                        options=spec["options"], timeout=180)
            assert alone["batch"] == 1
            for got, want in zip(job["result"]["items"], alone["result"]["items"], strict=True):
                assert got["artifacts"] == want["artifacts"]
                for key in ("deletion_auc", "insertion_auc", "random_deletion_auc",
                            "random_insertion_auc"):
                    assert got["quality"][key] == pytest.approx(want["quality"][key], abs=1e-5)


def test_the_openapi_spec_describes_target_and_quality() -> None:
    from tests.service.test_openapi_complete import spec_of
    from worker.contract import MAX_QUALITY_STEPS, QUALITY_BASELINES, TARGETS

    text = spec_of()["components"]["schemas"]["JobForm"]["properties"]["options"]["description"]
    for name in ("`quality`", "`target`", "`deletion_auc`", "`random_insertion_auc`",
                 "`quality_curves`", f"1..{MAX_QUALITY_STEPS}", *TARGETS, *QUALITY_BASELINES):
        assert name in text, name
