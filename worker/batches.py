"""Several jobs computed as one: their images go through one kind run (one model call per
image size), and the result is split back so each job gets what it would get alone (up to
float rounding: a batch adds in another order), with its own artifacts (named by its own
image positions) and its own progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from worker.kind_base import Artifacts, JobContext, artifact_name


def merge(ctxs: list[JobContext],
          progress: Callable[[float], None] | None = None) -> JobContext:
    """One context holding every job's images in order; ``class_index`` becomes per image.
    Progress goes to ``progress`` (all jobs at once), else to each job's own hook."""
    first = ctxs[0]
    targets: list[Any] = []
    for ctx in ctxs:
        given = ctx.options.get("class_index")
        targets += list(given) if isinstance(given, list) else [given] * len(ctx.images)
    options = dict(first.options)
    if "class_index" in options:
        options["class_index"] = targets

    def each(fraction: float) -> None:
        for ctx in ctxs:
            ctx.progress(fraction)

    return replace(first, options=options, progress=progress or each,
                   images=[i for c in ctxs for i in c.images],
                   originals=[o for c in ctxs for o in c.originals])


def split(result: dict, artifacts: Artifacts, sizes: list[int]) -> list[tuple[dict, Artifacts]]:
    """The merged run's items and artifacts, back per job (image ``start + i`` of the batch
    is image ``i`` of its job, and its artifacts are renamed to match)."""
    parts, start = [], 0
    for size in sizes:
        items, own = [], {}
        for i in range(size):
            item = dict(result["items"][start + i])
            names = {}
            for base, merged_name in item.get("artifacts", {}).items():
                names[base] = artifact_name(base, i)
                own[names[base]] = artifacts[merged_name]
            item["artifacts"] = names
            items.append(item)
        parts.append(({**result, "items": items}, own))
        start += size
    return parts


def run_together(run: Callable[[JobContext], tuple[dict, Artifacts]],
                 ctxs: list[JobContext],
                 progress: Callable[[float], None] | None = None) -> list[tuple[dict, Artifacts]]:
    """Each job's ``(result, artifacts)``, computed in one run of ``run``."""
    result, artifacts = run(merge(ctxs, progress))
    return split(result, artifacts, [len(c.images) for c in ctxs])
