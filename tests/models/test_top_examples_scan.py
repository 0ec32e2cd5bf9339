"""TopExamplesScanner on the tiny CNN against a brute-force pass over the layer's own output."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.top_examples import finish, log_edges, merge
from models.top_examples_scan import TopExamplesScanner
from tests.models import tiny_models as tm
from tests.models.test_top_examples import brute_force

EDGES = log_edges(0.01, 100.0, 3)


class Conv2Boxes:
    """conv2 of the tiny CNN (3×3 valid after a 3×3 same conv on 16×16): a 5×5 window
    starting one pixel up and left of the unit, clipped to the image by hand."""

    def box(self, y: int, x: int) -> list[int]:
        return [max(x - 1, 0), max(y - 1, 0), min(x + 4, 16), min(y + 4, 16)]


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return tm.functional()


def _dataset(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """37 images: 35 random ones, a black one, and a copy of channel 0's best image placed in
    the same chunk (so both copies go through one batch) with a larger global index."""
    x = tm.images(35, seed=4)
    scores = tm.features_by_hand(model, "functional", "conv2", x)[..., 0].max(axis=(1, 2))
    best = int(np.argmax(scores))
    x = np.concatenate([x, np.zeros_like(x[:1]), x[best:best + 1]])
    order = [best, 36, *[i for i in range(36) if i != best]]  # the copy next to the original
    x = x[order]
    indices = np.arange(37) * 3 + 1
    return x, indices


def _assert_close(got: list[dict], expected: list[dict]) -> None:
    """Images, units, crops, dead fractions and counts exactly; values to float rounding."""
    for g, e in zip(got, expected, strict=True):
        assert [t.pop("value") for t in g["top"]] == pytest.approx(
            [t.pop("value") for t in e["top"]], rel=1e-5, abs=1e-6)
        assert g == e


def test_chunks_through_the_model_equal_brute_force(model: keras.Model) -> None:
    x, indices = _dataset(model)
    scanner = TopExamplesScanner(model, "conv2")
    parts = [scanner.partial(x[a:b], indices[a:b], k=4, edges=EDGES, corrupt=c)
             for a, b, c in ((0, 12, 1), (12, 30, 0), (30, 37, 2))]
    merged = merge(merge(parts[2], parts[0]), parts[1])
    assert (merged.seen, merged.corrupt) == (37, 3)
    got = finish(merged, scanner.grid())
    acts = tm.features_by_hand(model, "functional", "conv2", x)
    expected = brute_force(acts, indices, list(range(6)), 4, EDGES, Conv2Boxes())
    assert [t["image"] for t in got[0]["top"][:2]] == [1, 4]  # the twins: smaller index first
    crops = [t["crop"] for ch in got for t in ch["top"]]
    assert any(0 in c[:2] or 16 in c[2:] for c in crops)  # some crops are clipped
    _assert_close(got, expected)


def test_preprocess_mode_is_applied_and_channels_chosen(model: keras.Model) -> None:
    x, indices = _dataset(model)
    scanner = TopExamplesScanner(model, "conv2", preprocess="unit")
    got = finish(scanner.partial(x, indices, channels=[5, 2], k=3, edges=EDGES),
                 scanner.grid())
    acts = tm.features_by_hand(model, "functional", "conv2", x / 255.0)
    _assert_close(got, brute_force(acts, indices, [5, 2], 3, EDGES, Conv2Boxes()))


def test_a_chunk_of_unreadable_images_only(model: keras.Model) -> None:
    scanner = TopExamplesScanner(model, "conv2")
    empty = scanner.partial(np.zeros((0, 16, 16, 3), np.float32), [], corrupt=3)
    assert (empty.channels, empty.seen, empty.corrupt) == (list(range(6)), 0, 3)
    assert all(ch["top"] == [] for ch in finish(empty, scanner.grid()))
    with pytest.raises(ValueError, match=r"\[6\]"):
        scanner.partial(np.zeros((0, 16, 16, 3), np.float32), [], channels=[1, 6])
    with pytest.raises(ValueError, match="flatten"):
        TopExamplesScanner(model, "flatten")
