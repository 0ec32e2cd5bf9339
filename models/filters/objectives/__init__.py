"""Filter-pattern objectives: one small module each over :mod:`.base`, found by name."""

from __future__ import annotations

from typing import Any

from models.errors import InvalidInputError
from models.filters.objectives.base import Objective, channel_means
from models.filters.objectives.channel import Channel
from models.filters.objectives.diversity import MAX_IMAGES as MAX_DIVERSITY_IMAGES
from models.filters.objectives.diversity import Diversity, gram_similarity
from models.filters.objectives.logit import ClassLogit
from models.filters.objectives.negative import Negative
from models.filters.objectives.neuron import Neuron

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (Channel, Neuron, ClassLogit, Negative, Diversity)
}

__all__ = ["MAX_DIVERSITY_IMAGES", "OBJECTIVES", "Objective", "channel_means",
           "gram_similarity", "make_objective"]


def make_objective(name: str, **params: Any) -> Objective:
    """The objective ``name`` (one of :data:`OBJECTIVES`) with its parameters."""
    if name not in OBJECTIVES:
        raise InvalidInputError(f"unknown objective {name!r}; expected one of "
                                f"{sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**params)
