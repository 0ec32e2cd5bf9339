"""Receptive field of one unit as a box of input pixels, exact at the image border.

:mod:`models.layer_table` gives a layer's theoretical field (size and jump, ignoring the
border). Here every unit gets the pixels it really sees, by running, along each spatial axis,
one interval per unit through the same graph walk (branches, merges, nested models):

- model input with ``n`` pixels along the axis: unit ``i`` sees ``[i, i]``;
- conv / depthwise / separable conv / pooling (kernel ``k``, stride ``s``, dilation ``d``,
  ``before`` padded zeros, as :func:`models.conv_arithmetic.conv_output_size` gives them):
  output unit ``o`` reads input positions ``o·s − before + d·t`` for ``t = 0..k−1``; those in
  ``0..n−1`` are real (the others are padding and see no pixel) and its interval is the union
  (smallest first, largest last) of theirs;
- ``ZeroPadding2D`` adds units that see nothing, ``Cropping2D`` drops units;
- element-wise layers and merges (Add, Concatenate, ...) pass intervals through, merges
  taking per unit the union over their inputs;
- Flatten, Dense, global pooling, reshapes, channels-first layers and unknown layers: no
  field (None), as in the layer table.

Intervals are inclusive ``[first, last]`` internally, an empty one is ``[EMPTY, -1]``. The
union of intervals per axis is the bounding box of the union of rectangles, so the box of a
unit is exactly the bounding box of every input pixel connected to it through the graph
(with non-zero weights, every pixel of the box can change the unit for a linear model; after
max pooling or a ReLU, only some may for a given image).

Boxes are reported half-open, ``[x0, y0, x1, y1]``: the unit sees ``image[y0:y1, x0:x1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from models.conv_arithmetic import conv_output_size
from models.graph import get_layer
from models.layer_table import _CONVS, _PASS_THROUGH, _POOLS, _Propagation, _window

L = keras.layers
EMPTY = np.iinfo(np.int64).max
Axes = tuple[np.ndarray, np.ndarray]  # rows (H, 2), cols (W, 2): inclusive [first, last]


class NoReceptiveFieldError(ValueError):
    """The layer's output has no spatial grid tied to input pixels (Dense, Flatten, ...)."""


@dataclass(frozen=True)
class ReceptiveGrid:
    """Pixel boxes of every unit of one layer's output grid ``(H_out, W_out)``.

    ``rows`` int64 ``(H_out, 2)``: inclusive first and last input row seen by units in output
    row ``y``; ``cols`` ``(W_out, 2)`` the same for columns. ``image_size`` is ``(H, W)``.
    """

    rows: np.ndarray
    cols: np.ndarray
    image_size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """``(H_out, W_out)``, the layer's output grid."""
        return len(self.rows), len(self.cols)

    def box(self, y: int, x: int) -> list[int]:
        """``[x0, y0, x1, y1]``, half-open: unit ``(y, x)`` sees ``image[y0:y1, x0:x1]``.

        A unit that sees only padding gets ``[0, 0, 0, 0]``. Raises IndexError outside the grid.
        """
        if not (0 <= y < len(self.rows) and 0 <= x < len(self.cols)):
            raise IndexError(f"unit ({y}, {x}) is outside the layer's grid {self.shape}")
        (y0, y1), (x0, x1) = self.rows[y], self.cols[x]
        if y1 < y0 or x1 < x0:
            return [0, 0, 0, 0]
        return [int(x0), int(y0), int(x1) + 1, int(y1) + 1]


def _unit_axis(n: int) -> np.ndarray:
    return np.repeat(np.arange(n, dtype=np.int64)[:, None], 2, axis=1)


def _empty_axis(n: int) -> np.ndarray:
    return np.tile(np.array([EMPTY, -1], dtype=np.int64), (n, 1))


def _through_window(axis: np.ndarray, k: int, s: int, d: int, padding: str) -> np.ndarray:
    """Intervals ``(n_out, 2)`` of a window layer's outputs from its inputs' ``(n, 2)``."""
    n = len(axis)
    size = conv_output_size(n, k, s, padding, d)
    before = size.pad[0] if isinstance(size.pad, tuple) else size.pad
    taps = np.arange(size.size)[:, None] * s - before + d * np.arange(k)[None, :]
    real = (taps >= 0) & (taps < n)
    seen = axis[np.clip(taps, 0, n - 1)]  # (n_out, k, 2)
    first = np.where(real, seen[..., 0], EMPTY).min(axis=1)
    last = np.where(real, seen[..., 1], -1).max(axis=1)
    return np.stack([first, last], axis=1)


def _window_state(op: Any, axes: Axes) -> Axes:
    kernel, strides, dilation = _window(op)
    return tuple(  # type: ignore[return-value]
        _through_window(a, k, s, d, op.padding)
        for a, k, s, d in zip(axes, kernel, strides, dilation, strict=True))


def _padding_state(op: Any, axes: Axes) -> Axes:
    if isinstance(op, L.ZeroPadding2D):
        return tuple(  # type: ignore[return-value]
            np.concatenate([_empty_axis(before), a, _empty_axis(after)])
            for a, (before, after) in zip(axes, op.padding, strict=True))
    return tuple(  # type: ignore[return-value]
        a[before:len(a) - after] for a, (before, after) in zip(axes, op.cropping, strict=True))


def _union(states: list[Axes | None]) -> Axes | None:
    """Per-unit union of same-sized grids; None if any is None or the grids differ."""
    if not states or any(s is None for s in states):
        return None
    grids = [s for s in states if s is not None]
    if len({(len(r), len(c)) for r, c in grids}) != 1:
        return None
    return tuple(  # type: ignore[return-value]
        np.stack([np.min([g[i][:, 0] for g in grids], axis=0),
                  np.max([g[i][:, 1] for g in grids], axis=0)], axis=1)
        for i in range(2))


class _BoxPropagation(_Propagation[Axes]):
    def layer_state(self, op: Any, ins: list[Axes | None]) -> Axes | None:
        if getattr(op, "data_format", "channels_last") != "channels_last":
            return None
        if isinstance(op, (*_CONVS, *_POOLS, L.ZeroPadding2D, L.Cropping2D)):
            if len(ins) != 1 or ins[0] is None:
                return None
            if isinstance(op, (L.ZeroPadding2D, L.Cropping2D)):
                return _padding_state(op, ins[0])
            return _window_state(op, ins[0])
        return _union(ins) if isinstance(op, _PASS_THROUGH) else None

    def merge(self, states: list[Axes | None]) -> Axes | None:
        return _union(states)


def _input_size(model: keras.Model, image_size: tuple[int, int] | None) -> tuple[int, int]:
    shape = model.inputs[0].shape
    if len(shape) != 4:
        raise NoReceptiveFieldError(f"model input {tuple(shape)} is not (batch, H, W, C)")
    if image_size is not None:
        return int(image_size[0]), int(image_size[1])
    if shape[1] is None or shape[2] is None:
        raise ValueError("the model takes images of any size: pass image_size=(H, W)")
    return int(shape[1]), int(shape[2])


def receptive_grid(model: keras.Model, layer: str,
                   image_size: tuple[int, int] | None = None) -> ReceptiveGrid:
    """The :class:`ReceptiveGrid` of layer path ``layer`` for images of ``image_size``
    ``(H, W)`` (default: the model's input size; needed when that is free).

    Only the model's first input carries pixels. Raises LayerNotFoundError for an unknown
    path and :class:`NoReceptiveFieldError` when the layer has no local field.
    """
    get_layer(model, layer)
    size = _input_size(model, image_size)
    starts: list[Axes | None] = [(_unit_axis(size[0]), _unit_axis(size[1]))]
    starts += [None] * (len(model.inputs) - 1)
    propagation = _BoxPropagation()
    propagation.run(model, starts, "")
    state = propagation.fields.get(layer)
    if state is None:
        raise NoReceptiveFieldError(f"layer {layer!r} has no local receptive field")
    return ReceptiveGrid(state[0], state[1], size)
