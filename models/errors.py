"""The engine's input errors: what a caller asked for cannot be done (as opposed to a bug).

Services map these, and only these, to "invalid input" answers; any other exception from the
engine is an internal error.
"""

from __future__ import annotations


class InvalidInputError(ValueError):
    """A request the engine refuses: a bad option, index, class or image for this model."""
