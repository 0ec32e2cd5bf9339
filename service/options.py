"""Check a job's ``kind``, ``layer`` and ``options`` against the model's stored metadata,
before anything is queued, and fill in every default (so the worker never picks one).
Raises :class:`OptionError` (a code and a plain message). Names, defaults and limits come from
:mod:`worker.contract`."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

from worker import contract


class OptionError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


MAX_OPTIONS_DEPTH = 16  # nesting of arrays and objects in ``options`` (the deepest used: 2)
MAX_INT_DIGITS = 32  # an integer option longer than this is refused before it is converted
# The longest options text: 4,096 listed channels, written out with spaces, take about 25 KB.
MAX_OPTIONS_CHARS = 65_536
_STRUCTURE = re.compile(r'[\[\]{}"\\]')  # what can open or close a level, or a string


def _nesting(raw: str) -> int:
    """How deeply arrays and objects nest in JSON text ``raw`` (brackets in strings ignored),
    read without parsing it (the parser itself would recurse that deep). One pass, linear in
    the text (a regular expression for whole strings took quadratic time on an unterminated
    string of escaped quotes: 6 s for 32 KB, in the API's event loop)."""
    depth = deepest = 0
    in_string, escaped = False, -1  # escaped: the position a backslash in a string escapes
    for match in _STRUCTURE.finditer(raw):
        char, at = match.group(), match.start()
        if at == escaped:
            continue
        if in_string:
            if char == "\\":
                escaped = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise OptionError("invalid_options", f"an integer of {len(digits)} digits in options; "
                          f"at most {MAX_INT_DIGITS}")
    return int(digits)


def _no_constant(name: str) -> float:
    raise OptionError("invalid_options", f"{name} is not a number options accept")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _no_constant(text)
    return value


def parse_options(raw: str | None) -> dict:
    """``options`` as a dict: a JSON object nested at most ``MAX_OPTIONS_DEPTH`` deep, with
    integers of at most ``MAX_INT_DIGITS`` digits and finite numbers only."""
    if raw is None or raw.strip() == "":
        return {}
    if len(raw) > MAX_OPTIONS_CHARS:
        raise OptionError("invalid_options", f"options is {len(raw)} characters long; at most "
                          f"{MAX_OPTIONS_CHARS}")
    if _nesting(raw) > MAX_OPTIONS_DEPTH:
        raise OptionError("invalid_options",
                          f"options nests deeper than {MAX_OPTIONS_DEPTH} levels")
    try:
        value = json.loads(raw, parse_int=_bounded_int, parse_constant=_no_constant,
                           parse_float=_finite_float)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        if isinstance(exc, OptionError):
            raise
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


def _int_list(options: dict, name: str, high: int, code: str, max_len: int,
              unique: bool = False) -> list[int]:
    """``options[name]``: a list of 1..``max_len`` integers in 0..``high`` (with ``unique``,
    each at most once: a channel or filter listed twice would be computed twice, and its
    artifact's name would stand for two entries)."""
    value = options[name]
    if not isinstance(value, list) or not value or len(value) > max_len:
        raise OptionError("invalid_options",
                          f"{name} must be a list of 1..{max_len} integers, got {value!r}")
    for item in value:
        _int({name: item}, name, 0, high, code)
    if unique and len(set(value)) != len(value):
        twice = sorted(v for v, n in Counter(value).items() if n > 1)
        raise OptionError("invalid_options", f"{name} lists {twice} more than once")
    return value


def _flat_objective(kind: str, options: dict | None) -> bool:
    """A filters job whose objective takes a flat (Dense, logit) layer instead of H×W×C."""
    objective = (options or {}).get("objective")
    return kind == "filters" and objective in contract.FLAT_LAYER_OBJECTIVES


def find_layer(model: dict, layer: str | None, kind: str, options: dict | None = None) -> dict:
    """The layer-table row for ``layer``; omitted, the model's ``default_layer`` (the last
    layer with a spatial output before the head, chosen once when the model is described),
    for a filters job of objective ``class`` the layer giving the model's (first) output (its
    logits; the last layer for a model described before that was recorded), and for the
    kinds that need a Conv2D (``explain``) the last Conv2D."""
    table = model.get("layers") or []
    flat = _flat_objective(kind, options)
    convs = [row["name"] for row in table if row["type"] == "Conv2D"]
    rows = {row["name"]: row for row in table}
    head = model.get("output_layer")
    head = head if head in rows else (table[-1]["name"] if table else None)
    name = layer or (head if flat else convs[-1]
                     if kind in contract.CONV_KINDS and convs else model.get("default_layer"))
    if name not in rows:
        raise OptionError("unknown_layer", f"model {model['id']!r} has no layer {name!r}")
    row = rows[name]
    spatial = contract.SPATIAL_KINDS + contract.DATASET_KINDS
    if flat and len(row["output_shape"]) != 1:
        raise OptionError("layer_not_flat", f"layer {name!r} has output {row['output_shape']};"
                          " objective 'class' needs a flat (K,) layer: a Dense layer or logits")
    if kind in spatial and not flat and len(row["output_shape"]) != 3:
        hint = " (a flat layer takes objective 'class' only)" if kind == "filters" else ""
        raise OptionError("layer_not_spatial", f"layer {name!r} has output "
                          f"{row['output_shape']}; {kind} needs H×W×C{hint}")
    if kind in contract.CONV_KINDS and row["type"] != "Conv2D":
        raise OptionError("layer_not_conv", f"layer {name!r} is a {row['type']}, not a Conv2D")
    return row


def _check_classes(options: dict, classes: int, image_count: int) -> None:
    if isinstance(options["class_index"], list):
        if len(options["class_index"]) != image_count:
            raise OptionError("invalid_options", "class_index as a list needs one entry "
                              f"per image ({image_count})")
        _int_list(options, "class_index", classes - 1, "class_out_of_range", image_count)
    elif options["class_index"] is not None:
        _int(options, "class_index", 0, classes - 1, "class_out_of_range")


def _check_explain(options: dict, row: dict) -> None:
    height, width, channels = row["output_shape"]
    _int(options, "filter", 0, channels - 1, "filter_out_of_range")
    free = 2**31 - 1  # a model that takes any size: its grid is the image's (the worker checks)
    _int(options, "y", 0, height - 1 if height else free, "position_out_of_range")
    _int(options, "x", 0, width - 1 if width else free, "position_out_of_range")


def _check_saliency(options: dict, model: dict) -> None:
    method = options["method"]
    if method not in contract.SALIENCY_METHODS:
        raise OptionError("invalid_options",
                          f"method must be one of {', '.join(contract.SALIENCY_METHODS)}")
    if options["target"] not in contract.SALIENCY_TARGETS:
        raise OptionError("invalid_options",
                          f"target must be one of {', '.join(contract.SALIENCY_TARGETS)}")
    for name in ("samples", "steps"):
        _int(options, name, 1, contract.MAX_SALIENCY_SAMPLES)
    _int(options, "max_steps", options["steps"], contract.MAX_REFINED_STEPS)
    tolerance = options["tolerance"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or \
            not 0 <= tolerance <= 1:
        raise OptionError("invalid_options", f"tolerance must be a number in 0..1 (the "
                          f"completeness gap allowed), got {tolerance!r}")
    noise = options["noise"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 1:
        raise OptionError("invalid_options", f"noise must be a number in 0..1 (a fraction of "
                          f"the image's range), got {noise!r}")
    baselines = contract.SALIENCY_BASELINES if method == "occlusion" else \
        tuple(b for b in contract.SALIENCY_BASELINES if b != "grey")
    if options["baseline"] is not None and options["baseline"] not in baselines:
        raise OptionError("invalid_options", f"baseline must be one of {', '.join(baselines)}"
                          f" for {method}")
    if method != "occlusion":  # window and stride are occlusion's alone: their defaults
        return  # (8 and 4) must not refuse another method on a model under 8 px
    sides = [n for n in (model.get("input_shape") or [None, None])[:2] if n]
    _int(options, "window", 1, max(sides, default=4096))  # free-size models: any image
    _int(options, "stride", 1, options["window"])
    if len(sides) == 2:  # free-size models: the worker checks
        positions = math.prod(_window_count(n, options["window"], options["stride"])
                              for n in sides)
        if positions > contract.MAX_OCCLUSION_WINDOWS:
            raise OptionError("invalid_options", f"window {options['window']} with stride "
                              f"{options['stride']} makes {positions} positions on a "
                              f"{sides[0]}×{sides[1]} image; at most "
                              f"{contract.MAX_OCCLUSION_WINDOWS}: use a larger stride")


def _check_filters(options: dict, given: dict, row: dict) -> None:
    """A filters job's channels (a flat layer's units for objective ``class``) and objective;
    no ``filters`` means the first few (one for ``diversity``)."""
    units = row["output_shape"][-1]
    if options["filters"] is not None:
        _int_list(options, "filters", units - 1, "class_out_of_range" if
                  _flat_objective("filters", options) else "filter_out_of_range",
                  contract.MAX_FILTERS_PER_JOB, unique=True)
    _check_objective(options, given, row)
    if options["filters"] is None:
        count = 1 if options["objective"] == "diversity" else contract.DEFAULT_FILTER_COUNT
        options["filters"] = list(range(min(count, units)))


def _check_objective(options: dict, given: dict, row: dict) -> None:
    """The filters objective, the options it takes (others refused when given) and their
    ranges; fills in the neuron's centre where the layer's grid is known."""
    objective = options["objective"]
    if objective not in contract.FILTER_OBJECTIVES:
        raise OptionError("invalid_options", f"objective must be one of "
                          f"{', '.join(contract.FILTER_OBJECTIVES)}, got {objective!r}")
    takes = contract.OBJECTIVE_OPTIONS.get(objective, ())
    stray = sorted(name for names in contract.OBJECTIVE_OPTIONS.values() for name in names
                   if name in given and name not in takes)
    if stray:
        raise OptionError("invalid_options", f"{', '.join(stray)} do(es) not apply to "
                          f"objective {objective!r}")
    if objective == "neuron":
        for axis, size in zip(("y", "x"), row["output_shape"][:2], strict=True):
            if options[axis] is None and size:
                options[axis] = size // 2  # the centre
            if options[axis] is not None:
                _int(options, axis, 0, (size or 2**31) - 1, "position_out_of_range")
    if objective == "diversity":
        _int(options, "n", 2, contract.MAX_DIVERSITY_IMAGES)
        weight = options["diversity_weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
                not 0 <= weight <= contract.MAX_DIVERSITY_WEIGHT:
            raise OptionError("invalid_options", f"diversity_weight must be a number in 0.."
                              f"{contract.MAX_DIVERSITY_WEIGHT:g}, got {weight!r}")
        if options["filters"] is not None and len(options["filters"]) != 1:
            raise OptionError("invalid_options", "objective 'diversity' makes n images of one "
                              f"channel: filters must name one, got {options['filters']!r}")


def _check_target(options: dict) -> None:
    """A gradcam job's ``target``; maps that do not depend on the class have no negative."""
    if options["target"] not in contract.TARGETS:
        raise OptionError("invalid_options",
                          f"target must be one of {', '.join(contract.TARGETS)}")
    if options["target"] == "negative" and options["method"] in contract.CLASS_FREE_CAM_METHODS:
        raise OptionError("invalid_options", f"method {options['method']} does not depend on "
                          "the class: it has no target negative")


def _quality(value: Any) -> dict | bool:
    """The ``quality`` option complete: False, or every field of QUALITY_OPTION_DEFAULTS."""
    if value is False:
        return False
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise OptionError("invalid_options", "quality must be true, false or an object with "
                          f"some of {', '.join(contract.QUALITY_OPTION_DEFAULTS)}, got {value!r}")
    unknown = set(value) - set(contract.QUALITY_OPTION_DEFAULTS)
    if unknown:
        raise OptionError("invalid_options", "unknown quality field(s) "
                          f"{', '.join(sorted(unknown))}; known: "
                          f"{', '.join(contract.QUALITY_OPTION_DEFAULTS)}")
    chosen = {**contract.QUALITY_OPTION_DEFAULTS,
              **{k: v for k, v in value.items() if v is not None}}
    if chosen["baseline"] not in contract.QUALITY_BASELINES:
        raise OptionError("invalid_options", "quality baseline must be one of "
                          f"{', '.join(contract.QUALITY_BASELINES)}, got {chosen['baseline']!r}")
    for name, low, high in (("steps", 1, contract.MAX_QUALITY_STEPS), ("seed", 0, 2**31 - 1)):
        _int({f"quality {name}": chosen[name]}, f"quality {name}", low, high)
    return chosen


def _default_size(options: dict, model: dict) -> None:
    """A filters job's pattern side, when not given, is the model's input side (the engine's
    default) held to the contract's range: a 4096² model's default pattern is 512² (its
    ascent resizes it to the input), a 1×1 model's 8² (a smaller one cannot be drawn)."""
    low, high = contract.FILTER_SIZE_RANGE
    side = (model.get("input_shape") or [None])[0]
    if options.get("size") is None and side and not low <= side <= high:
        options["size"] = min(max(side, low), high)


def _window_count(size: int, window: int, stride: int) -> int:
    """Occlusion windows along an axis of ``size`` pixels: starts ``0, stride, ...`` and one
    flush with the border when the stride does not end there (models/saliency/occlusion.py)."""
    window = min(window, size)
    count = (size - window) // stride + 1
    return count + (1 if (count - 1) * stride != size - window else 0)


def check_options(kind: str, options: dict, row: dict, model: dict, max_steps: int,
                  image_count: int) -> dict[str, Any]:
    """Validate ``options`` for ``kind`` on layer ``row``; returns them with every default
    filled in (``channels``: all, ``filters``: the first few, see the contract)."""
    defaults = {**contract.OPTION_DEFAULTS, **contract.DATASET_OPTION_DEFAULTS}[kind]
    unknown = set(options) - set(defaults)
    if unknown:
        raise OptionError("invalid_options", f"unknown option(s) for {kind}: "
                          f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(defaults))}")
    given = {k: v for k, v in options.items() if v is not None}
    options = {**defaults, **given}
    channels = row["output_shape"][-1]
    classes = int(model.get("num_classes") or 1)
    if "top_k" in defaults and "top_k" not in given:
        options["top_k"] = min(options["top_k"], classes)
    if "steps" in defaults and "steps" not in given and kind != "saliency":
        options["steps"] = min(options["steps"], max_steps)  # the filter-step budget
    if options.get("channels") is not None:
        _int_list(options, "channels", channels - 1, "filter_out_of_range",
                  contract.MAX_CHANNELS_LISTED, unique=True)
    if kind == "filters":
        _check_filters(options, given, row)
        _default_size(options, model)
    steps = {"saliency": contract.MAX_SALIENCY_SAMPLES,
             "quality": contract.MAX_QUALITY_STEPS}.get(kind, max_steps)
    for name, low, high in (("top_k", 1, classes), ("steps", 1, steps),
                            ("size", *contract.FILTER_SIZE_RANGE), ("seed", 0, 2**31 - 1),
                            ("k", 1, contract.MAX_TOP_EXAMPLES)):
        if options.get(name) is not None:
            _int(options, name, low, high)
    if kind == "saliency":
        _check_saliency(options, model)
    elif "method" in options and options["method"] not in contract.CAM_METHODS:
        raise OptionError("invalid_options",
                          f"method must be one of {', '.join(contract.CAM_METHODS)}")
    if kind == "gradcam":
        _check_target(options)
    if "quality" in options:
        options["quality"] = _quality(options["quality"])
    if "class_index" in options:
        _check_classes(options, classes, image_count)
    if kind == "explain":
        _check_explain(options, row)
    if "channels" in options and options["channels"] is None:
        options["channels"] = list(range(channels))
    return options
