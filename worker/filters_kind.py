"""The ``filters`` job kind: filter patterns by gradient ascent (:mod:`models.filters`).

Options arrive complete (:data:`worker.contract.OPTION_DEFAULTS`). ``objective`` names the
engine's objective (:mod:`models.filters.objectives`) and :data:`worker.contract.
OBJECTIVE_OPTIONS` the options it takes. Patterns already made are answered from the
filter-pattern cache (:mod:`worker.filter_cache`), keyed by the settings and the objective
with its parameters; only the others go through gradient ascent. The diversity objective makes
``n`` images of one channel together, so they are cached and computed as one set: artifact
``filter_<c>_<k>`` for image ``k``, where every other objective has ``filter_<f>``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models import render
from models.filters import AscentOptions, FilterVisualizer
from models.filters.ascent import ASCENT_VERSION
from models.filters.objectives import make_objective
from worker.contract import OBJECTIVE_OPTIONS
from worker.filter_cache import CachedFilter, pattern_key, weights_digest, worker_cache
from worker.kind_base import PNG, Artifacts, JobContext

ENGINE_NAMES = {"diversity_weight": "weight"}  # job option -> the objective's parameter


def objective_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The objective's name and the options it takes: what the cache key carries."""
    name = options["objective"]
    return {"objective": name, **{k: options[k] for k in OBJECTIVE_OPTIONS.get(name, ())}}


def _cache_key(ctx: JobContext, opts: AscentOptions, side: int,
               objective: dict[str, Any]) -> str:
    """The patterns' key, with the side the ascent uses (``size`` null or the model's own
    size: one entry)."""
    digest = ctx.tool(("weights_digest",), lambda m: weights_digest(m.model))
    return pattern_key(ctx.loaded.info.id, digest, ctx.layer, ctx.loaded.info.preprocess,
                       opts.steps, side, opts.seed, opts.learning_rate, ASCENT_VERSION,
                       objective)


def run_filters(ctx: JobContext) -> tuple[dict, Artifacts]:
    viz = ctx.tool(("filters", ctx.layer),
                   lambda m: FilterVisualizer(m.model, ctx.layer, m.info.preprocess))
    opts = AscentOptions(steps=ctx.options["steps"], size=ctx.options["size"],
                         seed=ctx.options["seed"])
    settings = objective_settings(ctx.options)
    name = settings["objective"]
    objective = make_objective(name, **{ENGINE_NAMES.get(k, k): v for k, v in settings.items()
                                        if k != "objective"})
    wanted = [int(f) for f in ctx.options["filters"]]
    diverse = name == "diversity"
    # Cache fields: the filters, or (diversity) the numbers of the channel's images.
    slots = list(range(ctx.options["n"])) if diverse else wanted
    key = _cache_key(ctx, opts, viz.side(opts.size),
                     {**settings, "channels": wanted} if diverse else settings)
    cache = worker_cache()
    patterns = cache.lookup(key, slots)
    cached = set(patterns)
    missing = [s for s in dict.fromkeys(slots) if s not in cached]
    new: dict[int, CachedFilter] = {}
    if missing or not wanted:  # no filters at all: the engine names the error
        out = viz.run(wanted if diverse else missing, opts, objective=objective,
                      progress=lambda done, total: ctx.progress(done / total),
                      should_cancel=ctx.should_cancel)
        made = slots if diverse else out.filters
        new = {s: CachedFilter(render.to_png(image), float(a), bool(d)) for s, image, a, d
               in zip(made, out.images, out.activation, out.dead, strict=True)}
        cache.store(ctx.loaded.info.id, key, new)
        patterns.update(new)
        cached -= set(new)
    cache.count(computed=len(new), cached=len(cached))
    return _result(wanted, slots, patterns, cached, diverse, opts.steps, name)


def _result(wanted: list[int], slots: list[int], patterns: dict[int, CachedFilter],
            cached: set[int], diverse: bool, steps: int, objective: str
            ) -> tuple[dict, Artifacts]:
    """The result's ``filters`` entries, one artifact per pattern and the grid."""
    entries: list[dict[str, Any]] = []
    for s in slots:
        channel = wanted[0] if diverse else s
        entry = {"index": channel, "activation": patterns[s].activation,
                 "artifact": f"filter_{channel}_{s}" if diverse else f"filter_{s}",
                 "cached": s in cached, "dead": patterns[s].dead}
        entries.append({**entry, "copy": s} if diverse else entry)
    artifacts: Artifacts = {e["artifact"]: (patterns[s].png, PNG)
                            for e, s in zip(entries, slots, strict=True)}
    labels = [f"{e['index']}" + (f".{e['copy']}" if diverse else "") +
              (" dead" if e["dead"] else "") for e in entries]
    artifacts["grid"] = (render.to_png(render.image_grid(
        np.stack([patterns[s].pixels() for s in slots]), labels)), PNG)
    return {"filters": entries, "steps": steps, "objective": objective}, artifacts
