"""Top examples per channel against a brute-force pass in plain Python loops."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest

from models import top_examples
from models.top_examples import (
    TopExamplesPartial,
    chunk_partial,
    empty_partial,
    finish,
    floors,
    log_edges,
    merge,
    merge_many,
    prune,
)

N, H, W, C = 37, 6, 5, 5
EDGES = log_edges(0.01, 100.0, 2)


class HandBoxes:
    """A 3×3 window at stride 2 over a 12×10 image, clipped by hand: [x0, y0, x1, y1]."""

    def box(self, y: int, x: int) -> list[int]:
        return [max(2 * x - 1, 0), max(2 * y - 1, 0), min(2 * x + 2, 10), min(2 * y + 2, 12)]


def dataset() -> tuple[np.ndarray, np.ndarray]:
    """``(N, H, W, C)`` activations with ties, and shuffled global image indices.

    Images 4 and 30 are equal; channel 3 is constant (every image and unit ties); channel 4
    is never positive (dead everywhere); image 7 has its channel-0 maximum at two units; some
    maxima sit exactly on histogram edges.
    """
    rng = np.random.default_rng(7)
    acts = rng.normal(0.0, 3.0, (N, H, W, C)).astype(np.float32)
    acts[30] = acts[4]
    acts[..., 3] = 1.5
    acts[..., 4] = -np.abs(acts[..., 4])
    acts[7, :, :, 0] = 0.5
    acts[7, 1, 3, 0] = acts[7, 4, 0, 0] = 9.0
    acts[11, ..., 1] = -1.0
    acts[11, 2, 2, 1] = EDGES[3]
    acts[12, ..., 1] = np.float32(EDGES[-1])
    acts[13, ..., 2] = 0.0
    indices = rng.permutation(100)[:N]
    return acts, indices


def brute_force(acts: np.ndarray, indices: np.ndarray, channels: list[int], k: int,
                edges: np.ndarray, boxes: HandBoxes) -> list[dict]:
    out = []
    for c in channels:
        scored = []
        for n in range(len(acts)):
            best, at = None, (0, 0)
            for y in range(acts.shape[1]):
                for x in range(acts.shape[2]):
                    v = float(acts[n, y, x, c])
                    if best is None or v > best:
                        best, at = v, (y, x)
            scored.append((best, int(indices[n]), *at))
        scored.sort(key=lambda s: (-s[0], s[1]))
        counts = [0] * (len(edges) + 1)
        for s in scored:
            counts[sum(1 for e in edges if e <= s[0])] += 1
        top = [{"image": i, "value": v, "y": y, "x": x, "crop": boxes.box(y, x)}
               for v, i, y, x in scored[:k]]
        dead = sum(1 for s in scored if s[0] <= 0) / len(scored)
        out.append({"index": c, "dead_fraction": dead, "top": top,
                    "histogram": {"edges": [float(e) for e in edges], "counts": counts}})
    return out


def chunks(acts: np.ndarray, indices: np.ndarray, cuts: list[int], **kw) -> list:
    bounds = [0, *cuts, len(acts)]
    return [chunk_partial(acts[a:b], indices[a:b], edges=EDGES, **kw)
            for a, b in itertools.pairwise(bounds)]


def fold(parts: list[TopExamplesPartial]) -> TopExamplesPartial:
    total = parts[0]
    for part in parts[1:]:
        total = merge(total, part)
    return total


@pytest.mark.parametrize(("channels", "k"), [(None, 4), ([3, 0, 4], 9), ([1, 2], 37), ([0], 50)])
def test_three_chunks_equal_brute_force(channels: list[int] | None, k: int) -> None:
    acts, indices = dataset()
    partial = fold(chunks(acts, indices, [10, 25], channels=channels, k=k))
    chosen = list(range(C)) if channels is None else channels
    expected = brute_force(acts, indices, chosen, k, EDGES, HandBoxes())
    assert finish(partial, HandBoxes()) == expected
    assert (partial.seen, partial.corrupt) == (N, 0)


def test_the_deliberate_ties_and_counts() -> None:
    """The rules by name, on top of the brute-force comparison."""
    acts, indices = dataset()
    result = finish(fold(chunks(acts, indices, [10, 25], k=N)), HandBoxes())
    constant = result[3]["top"]
    assert [t["image"] for t in constant] == sorted(indices.tolist())  # ties: smaller first
    assert {(t["y"], t["x"]) for t in constant} == {(0, 0)}  # first unit in row-major order
    assert result[3]["dead_fraction"] == 0.0 and result[4]["dead_fraction"] == 1.0
    image7 = next(t for t in result[0]["top"] if t["image"] == indices[7])
    assert (image7["y"], image7["x"], image7["crop"]) == (1, 3, [5, 1, 8, 4])
    twins = [t["image"] for t in result[0]["top"] if t["image"] in (indices[4], indices[30])]
    assert twins == sorted(twins) and len(twins) == 2
    assert result[2]["histogram"]["counts"][len(EDGES) // 2 + 1] >= 1  # a 0.0 max: bin [0, e)


def test_merge_is_order_and_grouping_free() -> None:
    acts, indices = dataset()
    parts = chunks(acts, indices, [5, 9, 20, 30], k=6, corrupt=1)
    whole = finish(chunk_partial(acts, indices, k=6, edges=EDGES, corrupt=5), HandBoxes())
    for order in itertools.permutations(parts):
        assert finish(fold(list(order)), HandBoxes()) == whole
    rng = random.Random(0)
    for _ in range(30):  # random trees: merge two random neighbours until one is left
        pool = rng.sample(parts, len(parts))
        while len(pool) > 1:
            i = rng.randrange(len(pool) - 1)
            pool[i:i + 2] = [merge(pool[i], pool[i + 1])]
        assert finish(pool[0], HandBoxes()) == whole
    assert fold(parts).corrupt == 5


@pytest.mark.parametrize("group", [2, 3, 16])
def test_merge_many_equals_brute_force_in_any_order_and_grouping(group: int,
                                                                 monkeypatch) -> None:
    """All partials sorted together, a group at a time (the worker's merge), give the
    brute-force lists, ties included, whatever the order and group size."""
    monkeypatch.setattr(top_examples, "MERGE_GROUP", group)
    acts, indices = dataset()
    parts = chunks(acts, indices, [3, 5, 9, 14, 20, 30, 33], k=6, corrupt=1)
    expected = brute_force(acts, indices, list(range(C)), 6, EDGES, HandBoxes())
    rng = random.Random(group)
    for _ in range(10):
        merged = merge_many(iter(rng.sample(parts, len(parts))))
        assert finish(merged, HandBoxes()) == expected
        assert (merged.seen, merged.corrupt) == (N, len(parts))
    assert merge_many([parts[0]]) is parts[0]
    with pytest.raises(ValueError, match="no partial"):
        merge_many([])
    other = chunk_partial(acts, indices, k=5, edges=EDGES)
    with pytest.raises(ValueError, match="do not merge"):
        merge_many([parts[0], other])


@pytest.mark.parametrize("k", [1, 3, 8, 12])
def test_chunks_pruned_by_done_chunks_floors_merge_to_brute_force(k: int) -> None:
    """Chunks done one after the other, each pruned by the k-th largest score on the lists of
    those done before it (as the workers do: worker.chunks keeps the k largest per channel),
    merge to the brute-force result, ties included; the later chunks keep fewer entries."""
    acts, indices = dataset()
    parts, tops, kept = [], np.full((C, k), -np.inf), []
    for part in chunks(acts, indices, [6, 12, 19, 26, 31], k=k):
        prune(part, tops[:, k - 1])
        kept.append(int((part.images >= 0).sum()))
        tops = -np.sort(-np.concatenate([tops, part.values], axis=1), axis=1)[:, :k]
        parts.append(part)
    expected = brute_force(acts, indices, list(range(C)), k, EDGES, HandBoxes())
    for order in (parts, parts[::-1]):
        assert finish(fold(order), HandBoxes()) == expected
    if k <= 3:
        assert sum(kept[3:]) < 3 * C * k  # later chunks carry less than full lists


def test_floors_and_prune_by_hand() -> None:
    acts, indices = dataset()
    full, short = chunks(acts, indices, [N - 2], k=3)  # 35 images, then 2 (< k)
    assert np.array_equal(floors(full), full.values[:, 2].astype(np.float64))
    assert np.isneginf(floors(short)).all()  # fewer than k images: no bound yet
    bound = np.full(C, -np.inf)
    bound[0] = full.values[0, 1]  # keeps channel 0's first two (and any equal), drops the third
    before = full.values.copy()
    assert prune(full, bound) == 1
    assert full.images[0, 2] == -1 and np.isneginf(full.values[0, 2])
    assert np.array_equal(full.values[1:], before[1:])
    with pytest.raises(ValueError, match="floors for"):
        prune(full, np.zeros(C + 1))


def test_to_dict_round_trips_through_json() -> None:
    acts, indices = dataset()
    for partial in (fold(chunks(acts, indices, [20], k=5, corrupt=2)),
                    chunk_partial(acts[:3], indices[:3], [4, 1], k=6, edges=EDGES),
                    empty_partial([0, 2], 3, EDGES, corrupt=4)):
        data = json.loads(json.dumps(partial.to_dict(), allow_nan=False))
        back = TopExamplesPartial.from_dict(data)
        for name in ("values", "images", "ys", "xs", "counts", "dead", "edges"):
            np.testing.assert_array_equal(getattr(back, name), getattr(partial, name))
            assert getattr(back, name).dtype == getattr(partial, name).dtype
        assert (back.channels, back.k, back.seen, back.corrupt) == (
            partial.channels, partial.k, partial.seen, partial.corrupt)
        assert finish(back, HandBoxes()) == finish(partial, HandBoxes())
    data["counts"] = chunk_partial(acts[:3], indices[:3], [4], k=3).to_dict()["counts"]
    with pytest.raises(ValueError, match="shape"):
        TopExamplesPartial.from_dict(data)


def test_fewer_images_than_k_and_empty_chunks() -> None:
    acts, indices = dataset()
    small = chunk_partial(acts[:2], indices[:2], [0], k=5, edges=EDGES)
    assert len(finish(small, HandBoxes())[0]["top"]) == 2
    nothing = empty_partial([0], 5, EDGES, corrupt=3)
    merged = merge(nothing, small)
    assert finish(merged, HandBoxes()) == finish(small, HandBoxes())
    assert (merged.seen, merged.corrupt) == (2, 3)
    assert finish(nothing, HandBoxes())[0]["dead_fraction"] == 0.0


def test_log_edges_are_signed_and_log_spaced() -> None:
    edges = log_edges(0.01, 100.0, 2)
    half = 0.01 * 10.0 ** (np.arange(9) / 2)
    np.testing.assert_allclose(edges, np.concatenate([-half[::-1], [0.0], half]))
    assert len(log_edges()) == 59
    with pytest.raises(ValueError, match="low < high"):
        log_edges(1.0, 0.5)


def test_bad_inputs_and_mismatched_partials_are_refused() -> None:
    acts, indices = dataset()
    with pytest.raises(ValueError, match="unique"):
        chunk_partial(acts[:3], [1, 2, 1])
    with pytest.raises(ValueError, match=r"\[7\]"):
        chunk_partial(acts[:3], indices[:3], [0, 7])
    with pytest.raises(ValueError, match="NaN"):
        chunk_partial(np.full((1, 2, 2, 1), np.nan, np.float32), [0])
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        chunk_partial(acts[:, 0], indices)
    base = chunk_partial(acts[:3], indices[:3], k=3)
    for other in (chunk_partial(acts[3:6], indices[3:6], k=4),
                  chunk_partial(acts[3:6], indices[3:6], [0, 1], k=3),
                  chunk_partial(acts[3:6], indices[3:6], k=3, edges=EDGES)):
        with pytest.raises(ValueError, match="do not merge"):
            merge(base, other)
