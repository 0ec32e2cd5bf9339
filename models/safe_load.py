"""Load an uploaded ``.keras`` archive without running anyone's code.

The archive's ``config.json`` is inspected before Keras sees it: every object must come from
a ``keras`` module, and layers that carry code (``Lambda``) are refused. Then Keras loads it
with ``safe_mode=True`` and no custom objects. Legacy HDF5 (``.h5``) files are refused: their
loader has no safe mode.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from typing import Any

import keras

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CODE_CARRYING = {"Lambda", "TFOpLambda", "SlicingOpLambda", "function", "__lambda__"}


class UnsafeModelError(ValueError):
    """The model needs code to load (Lambda layers, custom classes, legacy formats)."""


class InvalidModelError(ValueError):
    """The file is not a usable Keras model."""


def _configs(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _configs(value)


def _is_keras_module(module: str) -> bool:
    return module == "keras" or module.startswith("keras.")


def check_config(config: dict) -> None:
    """Raise UnsafeModelError if any object in a Keras config is not plain Keras."""
    for obj in _configs(config):
        name = obj.get("class_name")
        if name in CODE_CARRYING:
            raise UnsafeModelError(f"the model contains a {name!r} object, which carries code")
        module = obj.get("module")
        if name is not None and isinstance(module, str) and not _is_keras_module(module):
            raise UnsafeModelError(f"the model needs custom code: {module}.{name}")
        if obj.get("registered_name") and "class_name" in obj and module is None:
            if "." in str(obj["registered_name"]) or ">" in str(obj["registered_name"]):
                raise UnsafeModelError(f"the model needs custom code: {obj['registered_name']}")


def read_archive_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` of a ``.keras`` archive (checked for magic bytes first)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(HDF5_MAGIC):
        raise UnsafeModelError("legacy HDF5 (.h5) models are refused: save it as .keras")
    if not head.startswith(b"PK"):
        raise InvalidModelError("not a .keras archive (expected a zip file)")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidModelError(f"not a valid .keras archive: {exc}") from exc


def check_image_model(model: keras.Model) -> tuple[int | None, int | None, int]:
    """The ``(H, W, C)`` input of a single-input image model, else InvalidModelError."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise InvalidModelError("convscope needs one image input of shape (H, W, C)")
    h, w, c = model.inputs[0].shape[1:]
    if c not in (1, 3):
        raise InvalidModelError(f"the input has {c} channels; expected 1 (grey) or 3 (RGB)")
    return h, w, c


def load_keras_file(path: str | os.PathLike, max_bytes: int = 200 * 2**20) -> keras.Model:
    """Load ``path`` safely or raise UnsafeModelError / InvalidModelError with the reason."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise InvalidModelError(f"the file is {size} bytes; the limit is {max_bytes}")
    check_config(read_archive_config(path))
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        if "safe_mode" in text or "Could not locate" in text or "custom" in text.lower():
            raise UnsafeModelError(f"the model needs code to load: {text[:300]}") from exc
        raise InvalidModelError(f"Keras could not load the model: {text[:300]}") from exc
    except Exception as exc:  # any loader failure is the file's fault
        raise InvalidModelError(f"Keras could not load the model: {str(exc)[:300]}") from exc
    if not isinstance(model, keras.Model):
        raise InvalidModelError("the archive holds a layer, not a model")
    check_image_model(model)
    return model
