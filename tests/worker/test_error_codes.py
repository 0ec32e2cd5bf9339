"""A failed job's error code: the engine's input errors by type, everything else internal
(an engine bug must not look like a user's mistake)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def error_code():
    from worker.runner import _error_code

    return _error_code


def test_engine_input_errors_have_their_codes(error_code) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from models.errors import InvalidInputError
    from models.explain import LayerNotConvError, UnitOutOfRangeError
    from models.graph import LayerNotFoundError
    from models.zoo import UnknownModelError

    assert error_code(UnknownModelError("x")) == "unknown_model"
    assert error_code(LayerNotFoundError("x", [])) == "unknown_layer"
    assert error_code(LayerNotConvError("x")) == "layer_not_conv"
    assert error_code(InvalidInputError("x")) == "invalid_input"
    assert error_code(UnitOutOfRangeError("x")) == "position_out_of_range"
    assert error_code(SoftTimeLimitExceeded()) == "time_limit"


@pytest.mark.parametrize("exc", [ValueError("shapes do not match"), IndexError("oops"),
                                 KeyError("k"), RuntimeError("r")])
def test_other_errors_are_internal(error_code, exc: Exception) -> None:
    assert error_code(exc) == "internal_error"
