"""The Flask app factory. The API process never imports TensorFlow or ``models``: what it
knows of a model comes from the metadata a worker stored in Redis."""

from __future__ import annotations

import logging

from apiflask import APIFlask
from flask import Response

from service import auth, errors, form_fields
from service.api import (
    atlas,
    bundles,
    contract_api,
    dataset_images,
    datasets,
    docs_assets,
    health,
    jobs,
    models_api,
    spec_extras,
    ui,
)
from service.backend import Backend
from service.http_limits import FinishBody, check_uri_length
from service.multipart import FormRequest
from service.ratelimit import parse_rate
from worker.settings import Settings, get_settings

log = logging.getLogger("convscope.api")


def no_type_without_content(response: Response) -> Response:
    """A 204 carries no ``Content-Type`` (Flask gave it ``text/html``)."""
    if response.status_code == 204:
        del response.headers["Content-Type"]
    return response


def _typeless_options(app: APIFlask) -> None:
    """Flask's own answer to OPTIONS (the methods in ``Allow``, no body; no after-request
    hook sees it) without the ``text/html`` type Flask gives it."""
    default = app.make_default_options_response

    def options_response() -> Response:
        response = default()
        del response.headers["Content-Type"]
        return response

    app.make_default_options_response = options_response  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> APIFlask:
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
    app.request_class = FormRequest  # form bodies split in one pass (service/multipart.py)
    errors.init_app(app)
    auth.init_app(app)
    docs_assets.init_app(app)
    spec_extras.init_app(app)
    app.before_request(check_uri_length)
    app.after_request(no_type_without_content)
    _typeless_options(app)
    # An early answer (413, 401, ...) reads the rest of the body or closes the connection.
    app.wsgi_app = FinishBody(app.wsgi_app, settings.max_content_length)  # type: ignore[method-assign]
    Backend(settings).init_app(app)
    for blueprint in (health.bp, contract_api.bp, models_api.bp, jobs.bp, bundles.bp,
                      datasets.bp, dataset_images.bp, atlas.bp, ui.bp):
        app.register_blueprint(blueprint)
    form_fields.init_app(app)
    if settings.open_access:
        log.warning("CONVSCOPE_API_KEYS is not set: the API is open to anyone who can reach it")
    else:
        log.info("API keys required (%d tenants)", len(settings.api_keys))
    return app
