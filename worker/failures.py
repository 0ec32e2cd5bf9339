"""How a failed job is told apart: the user's error (an engine input error, by type, with its
code), an interruption (Redis gone, the worker stopping: the job runs again), or a bug
(``internal_error``, logged). TensorFlow can hide the first two behind errors of its own."""

from __future__ import annotations

import re

import redis
from celery.exceptions import SoftTimeLimitExceeded

from models.errors import InvalidInputError
from models.explain import LayerNotConvError, UnitOutOfRangeError
from models.graph import LayerNotFoundError
from models.zoo import UnknownModelError

INPUT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (UnknownModelError, "unknown_model"), (LayerNotFoundError, "unknown_layer"),
    (LayerNotConvError, "layer_not_conv"), (UnitOutOfRangeError, "position_out_of_range"),
    (InvalidInputError, "invalid_input"),
    (SoftTimeLimitExceeded, "time_limit"),
)


def engine_error(exc: BaseException) -> BaseException:
    """The engine's own input error behind ``exc``, else ``exc``. Raised while TensorFlow
    traces a compiled step, an error whose class autograph cannot rebuild from a message
    (every one of ours) comes out as a ``StagingError`` holding the traceback as its message,
    the original its context."""
    seen: BaseException | None = exc
    while seen is not None and type(seen).__name__ == "StagingError" and \
            hasattr(seen, "ag_error_metadata"):
        seen = seen.__context__  # autograph's wrapper: the error it wrapped
    inputs = tuple(cls for cls, _ in INPUT_ERRORS)
    return seen if seen is not exc and isinstance(seen, inputs) else exc


def error_code(exc: BaseException) -> str:
    """The job's error code: the engine's own input errors by type, anything else internal."""
    exc = engine_error(exc)
    for cls, code in INPUT_ERRORS:
        if isinstance(exc, cls):
            return code
    return "internal_error"


INTERRUPTIONS = (redis.ConnectionError, redis.TimeoutError, SystemExit, KeyboardInterrupt)


# pybind11's words when a shutdown lands while TensorFlow's C++ holds another Python error:
# "MISMATCH of original and normalized active exception types: ORIGINAL InvalidArgumentError
# REPLACED BY SystemExit: -241", raised as a RuntimeError with no chain.
_MASKED_SHUTDOWN = re.compile(r"error_already_set: MISMATCH .* REPLACED BY "
                              r"(SystemExit|KeyboardInterrupt)\b", re.DOTALL)


def interruption(exc: BaseException) -> BaseException | None:
    """``exc`` if it is an interruption (:data:`INTERRUPTIONS`), else the shutdown
    (``SystemExit``, ``KeyboardInterrupt``) it was raised while handling, if any. A shutdown
    can land inside TensorFlow's tracing, whose stack bookkeeping then raises
    ``AssertionError('Concurrent access?')`` in its place, or inside its C++ code, where
    pybind11 replaces it with a ``RuntimeError`` naming it: seen when Celery ended a task on
    losing the broker (billiard's SIGTERM handler raises ``SystemExit``). The job was
    interrupted, not broken."""
    if isinstance(exc, INTERRUPTIONS):
        return exc
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        if isinstance(found, (SystemExit, KeyboardInterrupt)):
            return found
        masked = _MASKED_SHUTDOWN.search(str(found)) if isinstance(found, RuntimeError) else None
        if masked:
            return SystemExit(str(found)[:200]) if masked[1] == "SystemExit" \
                else KeyboardInterrupt()
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return None
