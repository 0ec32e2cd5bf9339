"""Crops carried by top-examples partials: every crop of the merged top lists equals the unit's
receptive box cut by hand from the original image; any order of merging carries the same
table; the table survives JSON and the compact bytes; a partial without crops is handled by
the rule."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from models.top_example_crops import Patches
from models.top_examples import (
    TopExamplesPartial,
    empty_partial,
    finish,
    log_edges,
    merge,
    merge_many,
)
from models.top_examples_scan import TopExamplesScanner
from tests.models import tiny_models as tm
from tests.models.test_top_examples_scan import Conv2Boxes

EDGES = log_edges(0.01, 100.0, 3)
CUTS = ((0, 12, 1), (12, 30, 0), (30, 37, 2))  # three chunks: start, stop, corrupt


@pytest.fixture(scope="module")
def scanner() -> TopExamplesScanner:
    return TopExamplesScanner(tm.functional(), "conv2")


def _images() -> tuple[np.ndarray, np.ndarray]:
    """37 images of whole pixel values (as decoded files are), global indices 1, 4, 7, ..."""
    return np.rint(tm.images(37, seed=4)), np.arange(37) * 3 + 1


def _parts(scanner: TopExamplesScanner, x: np.ndarray, indices: np.ndarray,
           k: int = 4) -> list[TopExamplesPartial]:
    parts = [scanner.partial(x[a:b], indices[a:b], k=k, edges=EDGES, corrupt=c, crops=True)
             for a, b, c in CUTS]
    empty = scanner.partial(np.zeros((0, 16, 16, 3), np.float32), [], k=k, edges=EDGES,
                            corrupt=3, crops=True)  # a chunk of unreadable images only
    return [*parts, empty]


def _fold(parts: list[TopExamplesPartial]) -> TopExamplesPartial:
    total = parts[0]
    for part in parts[1:]:
        total = merge(total, part)
    return total


def test_carried_crops_equal_the_boxes_cut_by_hand(scanner: TopExamplesScanner) -> None:
    x, indices = _images()
    merged = _fold(_parts(scanner, x, indices))
    assert merged.patches is not None and merged.corrupt == 6
    position = {int(i): n for n, i in enumerate(indices)}
    boxes, units = Conv2Boxes(), set()
    for channel in finish(merged, scanner.grid()):
        for top in channel["top"]:
            x0, y0, x1, y1 = boxes.box(top["y"], top["x"])
            want = x[position[top["image"]], y0:y1, x0:x1].astype(np.uint8)
            got = merged.patches.crop(top["image"], top["y"], top["x"], top["crop"])
            assert got.dtype == np.uint8
            np.testing.assert_array_equal(got, want)
            units.add((top["image"], top["y"], top["x"]))
    assert sorted(units) == [tuple(key) for key in merged.patches.keys.tolist()]
    assert merged.patches.pixels.shape[1:] == (5, 5, 3)  # conv2's field
    assert any(0 in t["crop"][:2] or 16 in t["crop"][2:]  # some crops are cut at the border
               for ch in finish(merged, scanner.grid()) for t in ch["top"])


def test_any_merge_order_carries_the_same_crops(scanner: TopExamplesScanner) -> None:
    x, indices = _images()
    parts = _parts(scanner, x, indices, k=3)
    first = _fold(parts)
    orders = [_fold(list(order)) for order in itertools.permutations(parts)]
    orders.append(merge(merge(parts[3], parts[1]), merge(parts[2], parts[0])))
    orders += [merge_many(parts), merge_many(parts[::-1])]  # all at once, as the worker
    for other in orders:
        assert other.patches is not None and first.patches is not None
        np.testing.assert_array_equal(other.patches.keys, first.patches.keys)
        np.testing.assert_array_equal(other.patches.pixels, first.patches.pixels)
        assert finish(other, scanner.grid()) == finish(first, scanner.grid())


def test_crops_survive_json_and_bytes(scanner: TopExamplesScanner) -> None:
    x, indices = _images()
    partial = _fold(_parts(scanner, x, indices))
    for back in (TopExamplesPartial.from_dict(json.loads(json.dumps(partial.to_dict()))),
                 TopExamplesPartial.from_bytes(partial.to_bytes())):
        assert back.patches is not None and partial.patches is not None
        np.testing.assert_array_equal(back.patches.keys, partial.patches.keys)
        np.testing.assert_array_equal(back.patches.pixels, partial.patches.pixels)
        assert finish(back, scanner.grid()) == finish(partial, scanner.grid())
    data = partial.patches.to_dict()
    data["shape"][0] += 1
    with pytest.raises(ValueError, match="do not fit"):
        Patches.from_dict(data)
    without = scanner.partial(x[:3], indices[:3], k=2)
    assert TopExamplesPartial.from_dict(json.loads(json.dumps(without.to_dict()))).patches \
        is None
    assert TopExamplesPartial.from_bytes(without.to_bytes()).patches is None


def test_a_partial_without_crops(scanner: TopExamplesScanner) -> None:
    """One without crops and with images makes the merge one without crops (pictures are
    then drawn from the images read again); one that saw no image changes nothing."""
    x, indices = _images()
    with_crops = scanner.partial(x[:12], indices[:12], k=4, edges=EDGES, crops=True)
    without = scanner.partial(x[12:], indices[12:], k=4, edges=EDGES)
    assert merge(with_crops, without).patches is None
    assert merge(without, with_crops).patches is None
    assert merge_many([with_crops, without, with_crops]).patches is None
    nothing = empty_partial(list(range(6)), 4, EDGES, corrupt=2)
    for kept in (merge(with_crops, nothing), merge(nothing, with_crops)):
        assert kept.patches is not None and with_crops.patches is not None
        np.testing.assert_array_equal(kept.patches.pixels, with_crops.patches.pixels)
    with pytest.raises(KeyError):
        with_crops.patches.crop(10**6, 0, 0, [0, 0, 5, 5])


def test_fields_of_other_layers_do_not_merge(scanner: TopExamplesScanner) -> None:
    x, indices = _images()
    conv1 = TopExamplesScanner(scanner.model, "conv1")
    a = scanner.partial(x[:4], indices[:4], channels=[0, 1], k=2, edges=EDGES, crops=True)
    b = conv1.partial(x[4:8], indices[4:8], channels=[0, 1], k=2, edges=EDGES, crops=True)
    with pytest.raises(ValueError, match="do not merge"):
        merge(a, b)

