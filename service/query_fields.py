"""Numbers in query strings, written the way the spec says: ASCII digits only.

Python's ``int()`` and ``float()`` (which marshmallow's fields use) also take other scripts'
digits (``?limit=٥`` was 5), underscores between digits (``1_0`` was 10) and surrounding
spaces. A URL that carries any of these was written by something other than a client of
the spec, so it is refused with 400 like any other malformed number.
"""

from __future__ import annotations

import re
from typing import Any

from apiflask.fields import Float, Integer

INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


class AsciiInteger(Integer):
    """An integer of ASCII digits with an optional sign."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and not INTEGER.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class AsciiFloat(Float):
    """A decimal number of ASCII digits (sign, point and exponent allowed; no ``nan`` or
    ``inf``)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and not DECIMAL.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)
