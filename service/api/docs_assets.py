"""Swagger UI's own files for ``/docs``, served from the ``swagger-ui-bundle`` package.

apiflask's docs page loads Swagger UI from a CDN by default, so ``/docs`` stayed blank
wherever the browser has no internet. :func:`init_app` points the page at these routes
instead. That Swagger UI (4.15) renders OpenAPI 3.0 documents, not 3.1, so the spec is
written as OpenAPI 3.0.3.
"""

from __future__ import annotations

from apiflask import APIBlueprint, APIFlask
from flask import abort, send_from_directory
from swagger_ui_bundle import swagger_ui_path

PREFIX = "/docs/assets"
FILES = {
    "SWAGGER_UI_CSS": "swagger-ui.css",
    "SWAGGER_UI_BUNDLE_JS": "swagger-ui-bundle.js",
    "SWAGGER_UI_STANDALONE_PRESET_JS": "swagger-ui-standalone-preset.js",
    "DOCS_FAVICON": "favicon-32x32.png",
}
bp = APIBlueprint("docs_assets", __name__, enable_openapi=False)


@bp.get(f"{PREFIX}/<name>")
def asset(name: str):
    if name not in FILES.values():
        abort(404)
    return send_from_directory(str(swagger_ui_path), name, max_age=86400)


def init_app(app: APIFlask) -> None:
    app.config.update({key: f"{PREFIX}/{name}" for key, name in FILES.items()})
    app.config["OPENAPI_VERSION"] = "3.0.3"
    app.register_blueprint(bp)
