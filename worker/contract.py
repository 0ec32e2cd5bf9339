"""The shared vocabulary of convscope, defined once: job kinds, their options and defaults,
CAM methods, preprocess modes, job statuses, the queue and the task names, and the limits
the API checks and the engine enforces.

TensorFlow-free and dependency-free: the API, the CLI, the Python client and the worker import
it; the browser UI reads it from ``GET /v1/contract`` (see :func:`as_json`). The engine
(``models/``) may not import ``worker/``; ``tests/worker/test_contract.py`` checks its own
names and limits against these.
"""

from __future__ import annotations

from typing import Any

# -- jobs ---------------------------------------------------------------------------------
KINDS = ("activations", "filters", "gradcam", "explain", "saliency")
IMAGELESS_KINDS = ("filters",)  # kinds that take no image
SINGLE_IMAGE_KINDS = ("explain",)  # kinds that take exactly one image
# need a layer with an H×W×C output (``saliency``: the one guided Grad-CAM uses)
SPATIAL_KINDS = ("activations", "filters", "gradcam", "saliency")
CONV_KINDS = ("explain",)  # need a Conv2D layer
OVERLAY_KINDS = ("gradcam", "saliency")  # draw over the original: the API keeps it (PNG)
# Kinds over a dataset (form field ``dataset`` instead of ``image``), split into chunks that
# run as their own tasks and merge (worker/dataset_jobs.py); their layer must be spatial.
DATASET_KINDS = ("top_examples", "class_cam", "quality")

STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "canceled")

# A model record's status: being described, usable (trained or with random weights), refused.
MODEL_STATUSES = ("pending", "validating", "ready", "untrained", "refused")
MODEL_WAITING = ("pending", "validating")

# A dataset's status: its archive or folder being read, usable, or refused.
DATASET_STATUSES = ("processing", "ready", "failed")
DATASET_WAITING = ("processing",)
DATASET_LABELS, DATASET_BOXES = "labels.csv", "boxes.json"  # optional, at the dataset's root

QUEUE = "convscope"
KEY_PREFIX = "convscope:v1"  # every Redis key convscope writes (versioned) starts so
TASK_RUN_JOB = "convscope.run_job"
TASK_RUN_BATCH = "convscope.run_batch"  # the jobs waiting in one batch queue
TASK_DESCRIBE_MODEL = "convscope.describe_model"
TASK_INGEST_DATASET = "convscope.ingest_dataset"
TASK_RUN_DATASET_JOB = "convscope.run_dataset_job"  # plan a dataset job, send its chunks
TASK_RUN_CHUNK = "convscope.run_chunk"  # one chunk of a dataset job: (job id, chunk index)

# -- methods and modes --------------------------------------------------------------------
CAM_METHODS = ("gradcam", "gradcam++", "layercam", "scorecam", "hirescam", "xgradcam", "eigencam",
               "ablationcam", "faster_scorecam")
# What a filters job's images are made for (models/filters/objectives): a channel's mean, one
# unit of it (``y``, ``x``), a logit or Dense unit (the one objective a flat layer takes),
# what suppresses a channel, or ``n`` differing images of one channel.
FILTER_OBJECTIVES = ("channel", "neuron", "class", "negative", "diversity")
FLAT_LAYER_OBJECTIVES = ("class",)  # objectives whose layer has a flat (K,) output
OBJECTIVE_OPTIONS = {"neuron": ("y", "x"), "diversity": ("n", "diversity_weight")}
SALIENCY_METHODS = ("gradients", "smoothgrad", "integrated_gradients", "guided_backprop",
                    "guided_gradcam", "occlusion")
# What a gradcam or saliency job explains: the class's score, or what lowers it (its negative;
# a binary sigmoid's class 0 is class 1's negative direction).
TARGETS = ("class", "negative")
SALIENCY_TARGETS = TARGETS
CLASS_FREE_CAM_METHODS = ("eigencam",)  # maps that do not depend on the class: no negative
# What an integrated-gradients path starts from / what occlusion fills a window with
# (``baseline`` None: black for integrated gradients, grey for occlusion).
SALIENCY_BASELINES = ("black", "grey", "blur", "uniform")
PREPROCESS_MODES = ("raw", "unit", "tf", "caffe", "torch")

# The colour order each preprocess mode feeds the model's first layer ("caffe" is BGR).
CHANNEL_ORDER = {mode: ("BGR" if mode == "caffe" else "RGB") for mode in PREPROCESS_MODES}

# How an image is fitted to the model's input: resized to H×W without keeping the aspect ratio.
RESIZE = "squash"
RESIZE_NOTE = ("squash: the whole image resized (bilinear) to the model's input size, aspect "
               "ratio not kept; overlays are drawn at the original size")

# -- options ------------------------------------------------------------------------------
# Every option a kind accepts, with its default. ``None`` means "resolved from the model and
# layer" (all channels, the first DEFAULT_FILTER_COUNT filters, the model's input size, the
# top prediction). The API fills these in before a job is queued, so the worker and the job
# record always see complete options.
DEFAULT_FILTER_COUNT = 16
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "activations": {"channels": None, "top_k": 5},
    # ``steps``: 128 gives the README's picture (64 came out grey); ``y``, ``x`` (neuron; None:
    # the centre), ``n``, ``diversity_weight`` (diversity): see OBJECTIVE_OPTIONS.
    "filters": {"filters": None, "steps": 128, "size": None, "seed": 0, "objective": "channel",
                "y": None, "x": None, "n": 4, "diversity_weight": 10.0},
    # ``quality``: false, true (QUALITY_OPTION_DEFAULTS) or an object of some of those.
    "gradcam": {"method": "gradcam", "class_index": None, "top_k": 5, "target": "class",
                "quality": False},
    "explain": {"filter": 0, "y": 0, "x": 0},
    # ``samples``, ``noise`` (σ as a fraction of the image's range): smoothgrad; ``steps``,
    # ``tolerance``, ``max_steps`` (an image whose completeness gap is over ``tolerance`` is
    # computed again with doubled steps, up to ``max_steps``): integrated_gradients;
    # ``window``, ``stride``: occlusion; ``baseline``: both of those; ``seed``: smoothgrad's
    # noise, the uniform baseline. Other methods ignore them.
    "saliency": {"method": "gradients", "class_index": None, "target": "class", "top_k": 5,
                 "samples": 25, "noise": 0.15, "steps": 64, "tolerance": 0.01,
                 "max_steps": 1024, "baseline": None, "window": 8, "stride": 4, "seed": 0,
                 "quality": False},
}
# ``chunk_images``: images per chunk, None = CONVSCOPE_DATASET_CHUNK_IMAGES (also its ceiling).
DATASET_OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "top_examples": {"channels": None, "k": 9, "chunk_images": None},
    "class_cam": {"method": "gradcam", "chunk_images": None},
    "quality": {"methods": ("gradcam", "gradcam++"), "baseline": "blur", "steps": 16,
                "seed": 0, "chunk_images": None},
}
# ``quality``: what deleted pixels become (models/quality.py), and the most curve steps.
QUALITY_BASELINES = ("blur", "black")
# The ``quality`` option of gradcam and saliency jobs (per image: deletion / insertion curves
# beside a random map's, models/image_quality.py): ``true`` means these; an object may set any.
QUALITY_OPTION_DEFAULTS: dict[str, Any] = {"baseline": "blur", "steps": 16, "seed": 0}

# -- limits (the API refuses beyond them; the engine raises beyond them) --------------------
FILTER_SIZE_RANGE = (8, 512)  # side of a filter-pattern image, pixels
MAX_FILTERS_PER_JOB = 64
MAX_CHANNELS_LISTED = 4096
MAX_FILTER_STEPS = 10_000  # hard ceiling; CONVSCOPE_MAX_FILTER_STEPS (≤ this) is the budget
MAX_DIVERSITY_IMAGES = 16  # ``n`` of the diversity objective
MAX_DIVERSITY_WEIGHT = 1e6  # ``diversity_weight``
MAX_TOP_EXAMPLES = 64  # ``k`` of top_examples: images kept per channel
MAX_QUALITY_STEPS = 128  # ``steps`` of quality: points of each deletion / insertion curve
MAX_SALIENCY_SAMPLES = 256  # ``samples`` of smoothgrad and ``steps`` of integrated_gradients
MAX_REFINED_STEPS = 4096  # ``max_steps`` of integrated_gradients (models/saliency MAX_STEPS)
MAX_OCCLUSION_WINDOWS = 4096  # occlusion's window positions per image (one pass each)


def as_json() -> dict[str, Any]:
    """The vocabulary as JSON, for ``GET /v1/contract`` (the UI reads names from there)."""
    return {
        "kinds": list(KINDS), "imageless_kinds": list(IMAGELESS_KINDS),
        "single_image_kinds": list(SINGLE_IMAGE_KINDS), "spatial_kinds": list(SPATIAL_KINDS),
        "conv_kinds": list(CONV_KINDS), "overlay_kinds": list(OVERLAY_KINDS),
        "statuses": list(STATUSES), "terminal": list(TERMINAL),
        "model_statuses": list(MODEL_STATUSES), "model_waiting": list(MODEL_WAITING),
        "dataset_statuses": list(DATASET_STATUSES),
        "channel_order": CHANNEL_ORDER, "resize_note": RESIZE_NOTE,
        "cam_methods": list(CAM_METHODS), "preprocess_modes": list(PREPROCESS_MODES),
        "saliency_methods": list(SALIENCY_METHODS), "saliency_targets": list(SALIENCY_TARGETS),
        "saliency_baselines": list(SALIENCY_BASELINES),
        "targets": list(TARGETS), "class_free_cam_methods": list(CLASS_FREE_CAM_METHODS),
        "quality_option_defaults": QUALITY_OPTION_DEFAULTS,
        "max_saliency_samples": MAX_SALIENCY_SAMPLES, "max_refined_steps": MAX_REFINED_STEPS,
        "max_occlusion_windows": MAX_OCCLUSION_WINDOWS,
        "option_defaults": OPTION_DEFAULTS, "default_filter_count": DEFAULT_FILTER_COUNT,
        "resize": RESIZE, "filter_size_range": list(FILTER_SIZE_RANGE),
        "max_filters_per_job": MAX_FILTERS_PER_JOB,
        "filter_objectives": list(FILTER_OBJECTIVES),
        "flat_layer_objectives": list(FLAT_LAYER_OBJECTIVES),
        "objective_options": {k: list(v) for k, v in OBJECTIVE_OPTIONS.items()},
        "max_diversity_images": MAX_DIVERSITY_IMAGES,
        "dataset_kinds": list(DATASET_KINDS), "dataset_option_defaults": DATASET_OPTION_DEFAULTS,
        "max_top_examples": MAX_TOP_EXAMPLES, "quality_baselines": list(QUALITY_BASELINES),
        "max_quality_steps": MAX_QUALITY_STEPS,
    }
