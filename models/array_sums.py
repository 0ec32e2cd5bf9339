"""Partials that are sums: named arrays merged by addition.

A dataset job whose answer is a mean or a count (mean heatmaps per class, AUCs, hits,
confusion counts) keeps per chunk the *sums* of its terms; merging two chunks' partials is
element-wise addition, associative and commutative, so chunks merge in any order and any
grouping (exact for counts, up to float64 rounding for sums of reals).
"""

from __future__ import annotations

import base64
import io
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

Sums = dict[str, np.ndarray]


def add(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> Sums:
    """``a + b`` per name (a name in one only is kept); shapes must agree."""
    out = {name: np.asarray(value) for name, value in a.items()}
    for name, value in b.items():
        if name in out and np.shape(out[name]) != np.shape(value):
            raise ValueError(f"cannot add {name!r}: shapes {np.shape(out[name])} and "
                             f"{np.shape(value)}")
        out[name] = out[name] + value if name in out else np.asarray(value)
    return out


def to_json(sums: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Plain JSON: each array as NPY bytes, zlib-compressed, in base64."""
    packed = {}
    for name, value in sums.items():
        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        packed[name] = base64.b64encode(zlib.compress(buf.getvalue())).decode()
    return packed


def from_json(data: Mapping[str, str]) -> Sums:
    """The inverse of :func:`to_json`."""
    return {name: np.load(io.BytesIO(zlib.decompress(base64.b64decode(text))),
                          allow_pickle=False) for name, text in data.items()}
