"""Dataset jobs at the API: ``POST /v1/jobs`` with form field ``dataset`` (an id) instead of
``image``, kinds ``top_examples``, ``class_cam`` and ``quality``. Checked here, before
anything is queued: the two fields are exclusive, the dataset is the caller's (another
tenant's is 404 ``unknown_dataset``, as an unknown one) and ``ready`` (409
``dataset_not_ready`` otherwise), the model takes a fixed input size, the layer is spatial,
the options are complete and in range (``quality``: known CAM methods, bounded ``steps``, a
known ``baseline``; a dataset without boxes is accepted, its result says ``pointing_game``
null). The worker fans the job out in chunks (:mod:`worker.dataset_jobs`)."""

from __future__ import annotations

from service.api.datasets import dataset_record
from service.api.models_api import ready_model
from service.backend import backend
from service.errors import fail
from service.options import OptionError, check_options, find_layer, parse_options
from worker.contract import (
    CAM_METHODS,
    DATASET_KINDS,
    MAX_QUALITY_STEPS,
    QUALITY_BASELINES,
)


def is_dataset_job(form: dict) -> bool:
    return form.get("dataset") is not None or form["kind"] in DATASET_KINDS


def _check_form(form: dict) -> None:
    kind = form["kind"]
    if [f for f in form["image"] if f is not None] and form["dataset"] is not None:
        fail(400, "invalid_request", "send either 'image' files or a 'dataset', not both")
    if kind not in DATASET_KINDS:
        fail(400, "invalid_request", f"{kind} jobs take images, not a dataset "
             f"(dataset kinds: {', '.join(DATASET_KINDS)})")
    if form["dataset"] is None:
        fail(400, "missing_dataset", f"{kind} jobs need a 'dataset' (the id of one of your "
             "datasets) instead of images")


def _chunk_images(options: dict) -> int:
    """``chunk_images``: default and ceiling CONVSCOPE_DATASET_CHUNK_IMAGES."""
    most = backend().settings.dataset_chunk_images
    value = options.get("chunk_images")
    if value is None:
        return most
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise OptionError("invalid_options", f"chunk_images must be an integer in 1..{most}, "
                          f"got {value!r}")
    return value


def _check_quality(options: dict) -> None:
    """``methods``: distinct CAM methods; ``steps`` in 1..MAX_QUALITY_STEPS; ``baseline``."""
    methods = options["methods"]
    if (not isinstance(methods, (list, tuple)) or not methods
            or any(m not in CAM_METHODS for m in methods) or len(set(methods)) != len(methods)):
        raise OptionError("invalid_options", "methods must be a list of distinct CAM methods "
                          f"({', '.join(CAM_METHODS)}), got {methods!r}")
    options["methods"] = list(methods)
    steps = options["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or \
            not 1 <= steps <= MAX_QUALITY_STEPS:
        raise OptionError("invalid_options", f"steps must be an integer in "
                          f"1..{MAX_QUALITY_STEPS} for quality, got {steps!r}")
    if options["baseline"] not in QUALITY_BASELINES:
        raise OptionError("invalid_options", f"baseline must be one of "
                          f"{', '.join(QUALITY_BASELINES)}, got {options['baseline']!r}")


def validated_dataset_job(form: dict) -> tuple[dict, dict, dict, dict]:
    """``(model, layer row, complete options, dataset record)`` of a dataset job, or a
    problem response."""
    _check_form(form)
    record = dataset_record(form["dataset"])
    if record.get("status") != "ready":
        fail(409, "dataset_not_ready", f"dataset {record['id']!r} is {record.get('status')}; "
             "jobs need a ready dataset")
    settings = backend().settings
    model = ready_model(form["model"], settings.max_wait)
    if not all((model.get("input_shape") or [None, None])[:2]):
        fail(400, "invalid_request", f"model {model['id']!r} takes images of any size; "
             "dataset jobs need a model with a fixed input size")
    try:
        options = parse_options(form["options"])
        row = find_layer(model, form["layer"], form["kind"])
        options = check_options(form["kind"], options, row, model, settings.max_filter_steps,
                                int(record.get("images") or 0))
        options["chunk_images"] = _chunk_images(options)
        if form["kind"] == "quality":
            _check_quality(options)
    except OptionError as exc:
        fail(400, exc.code, str(exc))
    return model, row, options, record
