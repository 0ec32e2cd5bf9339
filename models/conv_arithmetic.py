"""Convolution arithmetic: output sizes and parameter counts, with the formula spelled out.

Pure Python (no TensorFlow), so the lesson's numbers can be computed and explained anywhere.
All sizes are along one spatial axis: an input of ``n`` pixels, a kernel of ``f`` taps with
dilation ``d`` (effective size ``f_eff = d·(f − 1) + 1``), stride ``s`` and padding ``p``::

    output = floor((n + 2p − f_eff) / s) + 1

Padding follows Keras: ``"valid"`` is ``p = 0``; ``"same"`` gives ``ceil(n / s)`` outputs and
pads ``max((out − 1)·s + f_eff − n, 0)`` zeros in total, ``total // 2`` before and the rest
after; an ``int`` ``p`` pads ``p`` zeros on both sides (``ZeroPadding2D(p)`` then ``"valid"``).
Pooling uses the same formula with the window as the kernel (Keras's pooling stride defaults
to the window) and no parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class OutputSize:
    """Output size of a convolution or pooling along one axis.

    ``pad`` is ``p`` zeros on each side for ``"valid"`` (0) and explicit ``int`` padding,
    or ``(before, after)`` for ``"same"``. ``exact`` is ``(n + pad_total − f_eff)/s + 1``
    before flooring; ``is_integer`` tells whether the kernel positions fit exactly.
    """

    size: int
    exact: float
    pad: int | tuple[int, int]
    effective_kernel: int
    is_integer: bool
    explanation: str


@dataclass(frozen=True)
class ParamCount:
    """Trainable parameters of a standard convolution: ``(kh·kw·c_in + 1)·filters``."""

    total: int
    weights: int
    biases: int
    formula: str


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _fmt(x: float) -> str:
    """``16`` for 16.0, ``16.5`` for 16.5, at most 4 decimals otherwise."""
    return str(int(x)) if float(x).is_integer() else f"{x:.4f}".rstrip("0")


def _uncovered(remainder: int, pad_after: int) -> str:
    """Why flooring drops ``remainder`` trailing columns of the (padded) input."""
    cols = "column" if remainder == 1 else f"{remainder} columns"
    verb = "is" if remainder == 1 else "are"
    real = max(remainder - pad_after, 0)
    if pad_after == 0:
        where = "of the input"
    elif real == 0:
        where = "of the padded input (padding)"
    else:
        where = f"of the padded input ({real} input, {remainder - real} padding)"
    return f"the last {cols} {where} {verb} not covered by any kernel position"


def _sentence(n: int, pads: tuple[int, int], f_eff: int, s: int, size: int, exact: float) -> str:
    before, after = pads
    if before == after:
        padded = f"{n} + 2·{before}" if before else f"{n}"
    else:
        padded = f"{n} + {before} + {after}"
    head = f"({padded} − {f_eff})/{s} + 1 = {_fmt(exact)}"
    if float(exact).is_integer():
        return f"{head}: every kernel position fits exactly"
    remainder = (n + before + after - f_eff) % s
    return f"{head} → floor → {size}: {_uncovered(remainder, after)}"


def same_padding(n: int, f_eff: int, s: int) -> tuple[int, int]:
    """``(before, after)`` zeros Keras (TensorFlow) pads for ``"same"``: ``ceil(n / s)``
    outputs from an input of ``n`` with effective kernel ``f_eff`` and stride ``s``."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + f_eff - n, 0)
    return total // 2, total - total // 2


def conv_output_size(
    n: int, f: int, s: int = 1, padding: str | int = "valid", dilation: int = 1
) -> OutputSize:
    """Output size along one axis of a conv with kernel ``f``, stride ``s``, dilation ``d``.

    ``padding`` is ``"valid"``, ``"same"`` (Keras semantics) or an ``int`` ``p ≥ 0`` applied
    on both sides. Raises ``ValueError`` naming the bad value for sizes below 1, an unknown
    padding, or a kernel larger than the padded input.
    """
    _check_positive(n=n, f=f, s=s, dilation=dilation)
    f_eff = dilation * (f - 1) + 1
    pads = _resolve_padding(n, f_eff, s, padding)
    if f_eff > n + sum(pads):
        raise ValueError(
            f"effective kernel {f_eff} (f={f}, dilation={dilation}) is larger than the "
            f"padded input {n + sum(pads)} (n={n}, padding={padding!r})"
        )
    exact = (n + sum(pads) - f_eff) / s + 1
    size = math.floor(exact)
    text = _sentence(n, pads, f_eff, s, size, exact)
    if padding == "same":
        text = f"same padding: ceil({n}/{s}) = {size} outputs, pad {pads[0]} before and "
        text += f"{pads[1]} after; " + _sentence(n, pads, f_eff, s, size, exact)
    if dilation > 1:
        text = f"f_eff = {dilation}·({f} − 1) + 1 = {f_eff}; " + text
    pad: int | tuple[int, int] = pads if padding == "same" else pads[0]
    return OutputSize(size, exact, pad, f_eff, float(exact).is_integer(), text)


def _resolve_padding(n: int, f_eff: int, s: int, padding: str | int) -> tuple[int, int]:
    """``(before, after)`` zeros for one axis."""
    if isinstance(padding, bool):
        raise ValueError(f"padding must be 'valid', 'same' or an int >= 0, got {padding!r}")
    if isinstance(padding, int):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        return padding, padding
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return same_padding(n, f_eff, s)
    raise ValueError(f"padding must be 'valid', 'same' or an int >= 0, got {padding!r}")


def conv_params(
    f: int | tuple[int, int], c_in: int, filters: int, use_bias: bool = True
) -> ParamCount:
    """Parameters of a 2-D conv: ``kh·kw·c_in·filters`` weights plus ``filters`` biases.

    The kernel tensor has shape ``(kh, kw, c_in, filters)``; ``f`` is ``k`` (square) or
    ``(kh, kw)``. E.g. ``conv_params(3, 3, 64).formula == "(3·3·3 + 1)·64 = 1792"``.
    """
    kh, kw = (f, f) if isinstance(f, int) else tuple(f)
    _check_positive(kh=kh, kw=kw, c_in=c_in, filters=filters)
    weights = kh * kw * c_in * filters
    biases = filters if use_bias else 0
    total = weights + biases
    if use_bias:
        formula = f"({kh}·{kw}·{c_in} + 1)·{filters} = {total}"
    else:
        formula = f"{kh}·{kw}·{c_in}·{filters} = {total}"
    return ParamCount(total, weights, biases, formula)
