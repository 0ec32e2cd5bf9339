"""Atomic file writes for the model cache: a reader sees the old file or the whole new one.

Several worker processes share ``data_dir``: each file is written to a temporary file beside
its target and renamed over it (:func:`os.replace` is atomic within one file system).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over.

    The temporary name keeps ``path``'s suffix (Keras picks the format from it); it is
    removed if ``write`` fails. The file is made world-readable (the cache is shared).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-",
                               suffix=target.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def save_model_atomically(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """``model.save(path)`` (a ``.keras`` archive), atomically; creates the directory."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, model.save)
