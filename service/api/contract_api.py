"""``GET /v1/contract``: the shared names and defaults (kinds, methods, modes, statuses,
option defaults, limits), so the browser UI and other clients copy none of them by hand."""

from __future__ import annotations

from apiflask import APIBlueprint

from service.backend import backend
from worker import contract
from worker.catalog import TRAINABLE_MODELS

bp = APIBlueprint("contract", __name__, url_prefix="/v1", tag="contract")


@bp.get("/contract")
def get_contract() -> dict:
    """Job kinds, CAM methods, preprocess modes, statuses, option defaults and limits."""
    settings = backend().settings
    return {**contract.as_json(), "max_filter_steps": settings.max_filter_steps,
            "max_images_per_job": settings.max_images_per_job,
            "max_content_length": settings.max_content_length,  # bytes in one request body
            "convscope_models": list(TRAINABLE_MODELS)}
