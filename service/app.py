"""The Flask app factory. The API process never imports TensorFlow or ``models``: what it
knows of a model comes from the metadata a worker stored in Redis."""

from __future__ import annotations

import logging

from apiflask import APIFlask
from celery import Celery

from worker.celery_app import make_celery
from worker.settings import Settings, get_settings
from worker.store import JobStore

log = logging.getLogger("convscope.api")


class Backend:
    """The API's handles on Redis (job store) and Celery (to enqueue by task name)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JobStore.from_url(settings.broker_url, settings.result_ttl,
                                       settings.model_ttl)
        self.celery: Celery = make_celery(settings)

    def enqueue(self, task: str, *args: str) -> None:
        self.celery.send_task(task, args=list(args))

    def init_app(self, app: APIFlask) -> None:
        app.extensions["convscope"] = self


def create_app(settings: Settings | None = None) -> APIFlask:
    from service import errors
    from service.api import contract_api, docs_assets, health, jobs, models_api, ui
    from service.ratelimit import parse_rate

    settings = settings or get_settings()
    parse_rate(settings.rate_limit)  # a bad CONVSCOPE_RATE_LIMIT stops the API at start
    app = APIFlask("convscope", title="convscope API", version="1.0",
                   spec_path="/openapi.json", docs_path="/docs")
    app.config.update(
        CONVSCOPE=settings,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        VALIDATION_ERROR_STATUS_CODE=400,
        INFO={"description": "convscope shows what a convolutional network sees: feature maps, "
              "filter patterns, Grad-CAM heatmaps and the arithmetic of convolution."},
        SECURITY_SCHEMES={"bearer": {"type": "http", "scheme": "bearer"}},
    )
    errors.init_app(app)
    docs_assets.init_app(app)
    Backend(settings).init_app(app)
    for blueprint in (health.bp, contract_api.bp, models_api.bp, jobs.bp, ui.bp):
        app.register_blueprint(blueprint)
    if settings.open_access:
        log.warning("CONVSCOPE_API_KEYS is not set: the API is open to anyone who can reach it")
    else:
        log.info("API keys required (%d tenants)", len(settings.api_keys))
    return app
