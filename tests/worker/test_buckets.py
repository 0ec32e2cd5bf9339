"""Batch-size buckets: gathered batches are padded to few sizes (each traces the model call
once) and never by as much as half."""

from __future__ import annotations

from worker.kinds import bucket


def test_buckets_cover_each_size_with_less_than_half_padding() -> None:
    sizes = range(1, 257)
    for n in sizes:
        assert n <= bucket(n) < 1.5 * n, n
    assert all(bucket(a) <= bucket(b) for a, b in zip(sizes, sizes[1:], strict=False))
    assert sorted({bucket(n) for n in range(1, 65)}) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert all(bucket(b) == b for b in {bucket(n) for n in sizes})  # a bucket is its own


def test_saliency_jobs_drawing_noise_over_the_batch_are_not_merged() -> None:
    from worker.batch_keys import batch_key

    plain = {"method": "gradients", "baseline": None, "seed": 0}
    assert batch_key("saliency", "shapes", "conv4", plain) is not None
    assert batch_key("saliency", "shapes", "conv4", {**plain, "method": "smoothgrad"}) is None
    assert batch_key("saliency", "shapes", "conv4",
                     {**plain, "method": "integrated_gradients", "baseline": "uniform"}) is None
    assert batch_key("saliency", "shapes", "conv4",
                     {**plain, "method": "integrated_gradients", "baseline": "blur"}) is not None
