"""Option defaults come from the contract and bend to the model and the server's budget."""

from __future__ import annotations

from service.options import check_options

ROW = {"name": "conv", "type": "Conv2D", "output_shape": [8, 8, 40]}
MODEL = {"id": "m", "num_classes": 3}


def test_defaults_fit_the_budget_and_the_model() -> None:
    filters = check_options("filters", {}, ROW, MODEL, max_steps=32, image_count=0)
    assert filters["steps"] == 32  # the contract's 64 is over this server's budget
    assert filters["filters"] == list(range(16)) and filters["seed"] == 0
    cam = check_options("gradcam", {}, ROW, MODEL, max_steps=32, image_count=1)
    assert cam == {"method": "gradcam", "class_index": None, "top_k": 3}  # only 3 classes
    acts = check_options("activations", {"top_k": 2}, ROW, MODEL, max_steps=32, image_count=1)
    assert acts["channels"] == list(range(40)) and acts["top_k"] == 2


def test_given_values_are_kept() -> None:
    filters = check_options("filters", {"steps": 20, "filters": [3]}, ROW, MODEL, max_steps=32,
                            image_count=0)
    assert filters["steps"] == 20 and filters["filters"] == [3]
