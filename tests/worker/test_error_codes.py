"""A failed job's error code: the engine's input errors by type, everything else internal
(an engine bug must not look like a user's mistake)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def error_code():
    from worker.failures import error_code

    return error_code


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


def test_a_shutdown_masked_by_another_error_is_still_an_interruption() -> None:
    import redis

    from worker.failures import interruption

    def masked() -> AssertionError:
        """What TensorFlow's stack bookkeeping raises when a shutdown lands in its tracing:
        an AssertionError raised while the SystemExit propagates, shown ``from None``."""
        try:
            try:
                raise SystemExit(-15)
            except SystemExit:
                raise AssertionError("Concurrent access?") from None
        except AssertionError as exc:
            return exc

    exc = masked()
    assert isinstance(interruption(exc), SystemExit)
    lost = redis.ConnectionError("gone")
    assert interruption(lost) is lost
    assert interruption(ValueError("a real bug")) is None
    try:  # an error raised while handling a Redis error is the error's own
        try:
            raise redis.ConnectionError("gone")
        except redis.ConnectionError:
            raise ValueError("a real bug")  # noqa: B904
    except ValueError as bug:
        assert interruption(bug) is None


def test_a_shutdown_pybind11_replaced_is_still_an_interruption() -> None:
    """A SIGTERM's SystemExit raised while TensorFlow's C++ held an InvalidArgumentError (in
    its tracing): pybind11 raises a RuntimeError naming both, with no chain (seen in CI when
    Redis was killed during a filters job's first trace)."""
    from worker.failures import interruption

    text = ("pybind11::error_already_set: MISMATCH of original and normalized active "
            "exception types: ORIGINAL InvalidArgumentError REPLACED BY SystemExit: -241\n\nAt:")
    assert isinstance(interruption(RuntimeError(text)), SystemExit)
    caught = RuntimeError(text.replace("SystemExit: -241", "KeyboardInterrupt: "))
    assert isinstance(interruption(caught), KeyboardInterrupt)
    other = RuntimeError(text.replace("SystemExit", "ValueError"))
    assert interruption(other) is None  # another replacement is TensorFlow's business
    assert interruption(ValueError(text)) is None  # only pybind11's RuntimeError


def test_an_input_error_raised_in_a_compiled_step_keeps_its_code(error_code) -> None:
    import tensorflow as tf

    from models.explain import UnitOutOfRangeError
    from worker.failures import engine_error

    @tf.function
    def step(x: tf.Tensor) -> tf.Tensor:
        if x.shape[1] < 5:  # at tracing, as the engine's shape checks are
            raise UnitOutOfRangeError("unit (y=9) outside the output 2×2")
        return x

    with pytest.raises(Exception) as caught:
        step(tf.zeros((1, 2)))
    assert not isinstance(caught.value, UnitOutOfRangeError)  # autograph's StagingError
    assert error_code(caught.value) == "position_out_of_range"
    assert str(engine_error(caught.value)) == "unit (y=9) outside the output 2×2"
    bug = ValueError("a bug")
    assert engine_error(bug) is bug and error_code(bug) == "internal_error"


def test_a_bug_raised_while_an_input_error_is_handled_stays_internal(error_code) -> None:
    from models.errors import InvalidInputError
    from worker.failures import engine_error

    try:
        try:
            raise InvalidInputError("a bad option")
        except InvalidInputError:
            raise RuntimeError("a bug in the handler")  # noqa: B904
    except RuntimeError as bug:
        assert bug.__context__ is not None
        assert engine_error(bug) is bug and error_code(bug) == "internal_error"
