"""Filter patterns: what input a channel responds to most, found by gradient ascent."""

from models.filters.ascent import AscentCanceled, AscentOptions, FilterPatterns, FilterVisualizer

__all__ = ["AscentCanceled", "AscentOptions", "FilterPatterns", "FilterVisualizer"]
