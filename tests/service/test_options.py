"""Option defaults come from the contract and bend to the model and the server's budget."""

from __future__ import annotations

from service.options import check_options

ROW = {"name": "conv", "type": "Conv2D", "output_shape": [8, 8, 40]}
MODEL = {"id": "m", "num_classes": 3}


def test_defaults_fit_the_budget_and_the_model() -> None:
    filters = check_options("filters", {}, ROW, MODEL, max_steps=32, image_count=0)
    assert filters["steps"] == 32  # the contract's 128 is over this server's budget
    assert filters["filters"] == list(range(16)) and filters["seed"] == 0
    cam = check_options("gradcam", {}, ROW, MODEL, max_steps=32, image_count=1)
    assert cam == {"method": "gradcam", "class_index": None, "top_k": 3,  # only 3 classes
                   "target": "class", "quality": False}
    acts = check_options("activations", {"top_k": 2}, ROW, MODEL, max_steps=32, image_count=1)
    assert acts["channels"] == list(range(40)) and acts["top_k"] == 2


def test_given_values_are_kept() -> None:
    filters = check_options("filters", {"steps": 20, "filters": [3]}, ROW, MODEL, max_steps=32,
                            image_count=0)
    assert filters["steps"] == 20 and filters["filters"] == [3]


def test_saliency_steps_follow_their_own_limit_not_the_filter_budget() -> None:
    import pytest

    from service.options import OptionError
    from worker.contract import MAX_SALIENCY_SAMPLES

    model = {**MODEL, "input_shape": [64, 64, 3]}
    chosen = check_options("saliency", {"method": "integrated_gradients"}, ROW, model,
                           max_steps=10, image_count=1)
    assert chosen["steps"] == 64 and chosen["baseline"] is None  # not cut to the 10 filter steps
    assert check_options("saliency", {"steps": MAX_SALIENCY_SAMPLES}, ROW, model, max_steps=10,
                         image_count=1)["steps"] == MAX_SALIENCY_SAMPLES
    with pytest.raises(OptionError, match="out of range"):
        check_options("saliency", {"steps": MAX_SALIENCY_SAMPLES + 1}, ROW, model,
                      max_steps=1000, image_count=1)
    with pytest.raises(OptionError, match="positions on a 224×224 image"):
        check_options("saliency", {"method": "occlusion", "window": 8, "stride": 2}, ROW,
                      {**model, "input_shape": [224, 224, 3]}, max_steps=10, image_count=1)


def test_window_and_stride_bind_occlusion_alone() -> None:
    """On a model under 8 px, occlusion's defaults (window 8, stride 4) do not fit, and only
    occlusion is refused for them: the other methods ignore window and stride."""
    import pytest

    from service.options import OptionError
    from worker.contract import SALIENCY_METHODS

    tiny = {**MODEL, "input_shape": [4, 4, 3]}
    for method in SALIENCY_METHODS:
        if method == "occlusion":
            with pytest.raises(OptionError, match="window=8 is out of range 1..4"):
                check_options("saliency", {"method": method}, ROW, tiny, 10, 1)
        else:
            assert check_options("saliency", {"method": method}, ROW, tiny, 10, 1)["method"] \
                == method
    assert check_options("saliency", {"method": "occlusion", "window": 2, "stride": 2}, ROW,
                         tiny, 10, 1)["window"] == 2


def test_a_filters_default_size_is_held_to_the_contracts_range() -> None:
    from worker.contract import FILTER_SIZE_RANGE

    def size(side: int | None, given: dict | None = None) -> int | None:
        model = {**MODEL, "input_shape": [side, side, 3]}
        return check_options("filters", dict(given or {}), ROW, model, 8, 0)["size"]

    low, high = FILTER_SIZE_RANGE
    assert (size(4096), size(1), size(64), size(None)) == (high, low, None, None)
    assert size(4096, {"size": 100}) == 100  # a size given is kept


def test_explain_positions_on_a_model_of_any_size_are_left_to_the_worker() -> None:
    import pytest

    from service.options import OptionError

    free = {"name": "conv", "type": "Conv2D", "output_shape": [None, None, 4]}
    assert check_options("explain", {"y": 5, "x": 7}, free, MODEL, 8, 1)["y"] == 5
    with pytest.raises(OptionError, match="out of range 0..7"):
        check_options("explain", {"y": 8, "x": 0}, ROW, MODEL, 8, 1)  # an 8×8 grid


def test_explain_without_a_layer_takes_the_last_conv2d() -> None:
    from service.options import find_layer

    table = [{"name": n, "type": t, "output_shape": [4, 4, 2]}
             for n, t in (("c1", "Conv2D"), ("c2", "Conv2D"), ("pool", "MaxPooling2D"))]
    model = {"id": "m", "layers": table, "default_layer": "pool"}
    assert find_layer(model, None, "explain")["name"] == "c2"
    assert find_layer(model, None, "activations")["name"] == "pool"
    assert find_layer(model, "c1", "explain")["name"] == "c1"


def test_quality_steps_name_one_range_whichever_side_is_missed() -> None:
    import pytest

    from service.options import OptionError
    from worker.contract import MAX_QUALITY_STEPS

    for steps in (0, MAX_QUALITY_STEPS + 1):  # both said 1..128, not 1..512 below and 1..128 above
        with pytest.raises(OptionError, match=f"out of range 1..{MAX_QUALITY_STEPS}$"):
            check_options("quality", {"steps": steps}, ROW, MODEL, max_steps=512, image_count=0)
    assert check_options("quality", {"steps": MAX_QUALITY_STEPS}, ROW, MODEL, max_steps=512,
                         image_count=0)["steps"] == MAX_QUALITY_STEPS
