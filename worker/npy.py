"""NumPy arrays as ``.npy`` bytes (no pickle): how inputs and artifacts are stored."""

from __future__ import annotations

import io

import numpy as np


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
