"""Root conftest: the pipeline fixtures (real Redis, real Celery worker, live API) are shared
by tests/service, tests/cli and tests/ui, so they start once per session."""

pytest_plugins = ["tests.pipeline"]

import os  # noqa: E402

# The docker compose stack test needs a Docker engine and runs as its own step
# (`make compose-test`, which .ci/run calls after `make test`); the main run does not collect it.
collect_ignore = [] if os.environ.get("CONVSCOPE_COMPOSE_TEST") == "1" else ["tests/compose"]
