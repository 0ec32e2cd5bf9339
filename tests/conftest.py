"""Shared pytest fixtures for the convscope test suite."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Before anything imports TensorFlow: keep its C++ start-up chatter out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The kernels every convscope process computes with (see models/__init__.py), whichever test
# module imports TensorFlow first.
import models  # noqa: E402,F401

if TYPE_CHECKING:
    import keras

ROOT = Path(__file__).resolve().parents[1]


def model_cache_dir() -> Path:
    """``$CONVSCOPE_DATA_DIR/models`` if set, else ``<repo>/data/models`` (gitignored)."""
    data_dir = os.environ.get("CONVSCOPE_DATA_DIR")
    return (Path(data_dir) if data_dir else ROOT / "data") / "models"


@pytest.fixture(scope="session")
def shapes_model() -> keras.Model:
    """The built-in ``shapes`` model, trained once (under two minutes) and then cached."""
    from models.shapes_model import load_or_train_shapes

    return load_or_train_shapes(model_cache_dir())
