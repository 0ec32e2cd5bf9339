"""Check a job's ``kind``, ``layer`` and ``options`` against the model's stored metadata,
before anything is queued. Raises :class:`OptionError` (a code and a plain message)."""

from __future__ import annotations

import json
from typing import Any

KINDS = ("activations", "filters", "gradcam", "explain")
CAM_METHODS = ("gradcam", "gradcam++", "layercam", "scorecam")
KNOWN = {
    "activations": {"channels", "top_k"},
    "filters": {"filters", "steps", "size", "seed"},
    "gradcam": {"method", "class_index", "top_k"},
    "explain": {"filter", "y", "x"},
}


class OptionError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_options(raw: str | None) -> dict:
    if raw is None or raw.strip() == "":
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise OptionError("invalid_options", f"options is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise OptionError("invalid_options", "options must be a JSON object")
    return value


def _int(options: dict, name: str, low: int, high: int, code: str = "invalid_options") -> int:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError("invalid_options", f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise OptionError(code, f"{name}={value} is out of range {low}..{high}")
    return value


def _int_list(options: dict, name: str, high: int, code: str, max_len: int) -> list[int]:
    value = options[name]
    if not isinstance(value, list) or not value or len(value) > max_len:
        raise OptionError("invalid_options",
                          f"{name} must be a list of 1..{max_len} integers, got {value!r}")
    for item in value:
        _int({name: item}, name, 0, high, code)
    return value


def find_layer(model: dict, layer: str | None, kind: str) -> dict:
    """The layer-table row for ``layer`` (default: the model's last 4-D layer)."""
    name = layer or model.get("default_layer")
    rows = {row["name"]: row for row in model.get("layers") or []}
    if name not in rows:
        raise OptionError("unknown_layer", f"model {model['id']!r} has no layer {name!r}")
    row = rows[name]
    if kind in ("activations", "gradcam", "filters") and len(row["output_shape"]) != 3:
        raise OptionError("layer_not_spatial",
                          f"layer {name!r} has output {row['output_shape']}; {kind} needs H×W×C")
    if kind == "explain" and row["type"] != "Conv2D":
        raise OptionError("layer_not_conv", f"layer {name!r} is a {row['type']}, not a Conv2D")
    return row


def check_options(kind: str, options: dict, row: dict, model: dict, max_steps: int,
                  image_count: int) -> dict[str, Any]:
    """Validate ``options`` for ``kind`` on layer ``row``; returns them unchanged."""
    unknown = set(options) - KNOWN[kind]
    if unknown:
        raise OptionError("invalid_options", f"unknown option(s) for {kind}: "
                          f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(KNOWN[kind]))}")
    channels = row["output_shape"][-1]
    classes = int(model.get("num_classes") or 1)
    if "channels" in options:
        _int_list(options, "channels", channels - 1, "filter_out_of_range", 4096)
    if "filters" in options:
        _int_list(options, "filters", channels - 1, "filter_out_of_range", 64)
    if "top_k" in options:
        _int(options, "top_k", 1, classes)
    if "steps" in options:
        _int(options, "steps", 1, max_steps)
    if "size" in options:
        _int(options, "size", 8, 512)
    if "seed" in options:
        _int(options, "seed", 0, 2**31 - 1)
    if "method" in options and options["method"] not in CAM_METHODS:
        raise OptionError("invalid_options", f"method must be one of {', '.join(CAM_METHODS)}")
    if "class_index" in options:
        if isinstance(options["class_index"], list):
            if len(options["class_index"]) != image_count:
                raise OptionError("invalid_options", "class_index as a list needs one entry "
                                  f"per image ({image_count})")
            _int_list(options, "class_index", classes - 1, "class_out_of_range", image_count)
        else:
            _int(options, "class_index", 0, classes - 1, "class_out_of_range")
    if kind == "explain":
        height, width = row["output_shape"][0], row["output_shape"][1]
        options.setdefault("filter", 0)
        options.setdefault("y", 0)
        options.setdefault("x", 0)
        _int(options, "filter", 0, channels - 1, "filter_out_of_range")
        _int(options, "y", 0, (height or 1) - 1, "position_out_of_range")
        _int(options, "x", 0, (width or 1) - 1, "position_out_of_range")
    return options
