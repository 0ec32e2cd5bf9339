"""Root conftest: the pipeline fixtures (real Redis, real Celery worker, live API) are shared
by tests/service, tests/cli and tests/ui, so they start once per session."""

pytest_plugins = ["tests.pipeline"]
