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


class Recording:
    """A CAM that records the batch sizes it is called with."""

    def __init__(self, cam) -> None:
        self.cam, self.sizes = cam, []

    def opens_batch(self, shape) -> bool:
        return self.cam.opens_batch(shape)

    def __call__(self, batch, class_index=None):
        self.sizes.append(len(batch))
        return self.cam(batch, class_index=class_index)


def test_batches_through_the_open_trace_are_not_padded() -> None:
    """Grad-CAM computes 5 small images as 5 (one trace serves every size), Score-CAM as
    bucket(5) = 6 (it traces each size); each image's map is its own either way."""
    from types import SimpleNamespace

    import numpy as np

    from models.cam import make_cam
    from tests.models import tiny_models as tm
    from worker.kinds import _cam_per_image

    model = tm.build("functional")
    images = list(tm.images(5, seed=21).astype(np.uint8))
    ctx = SimpleNamespace(images=images, options={"class_index": [0, 1, 2, 1, 0]},
                          progress=lambda fraction: None)
    for method, size in (("gradcam", 5), ("scorecam", 6)):
        cam = Recording(make_cam(method, model, tm.PATHS["functional"]["conv2"]))
        maps = _cam_per_image(ctx, cam)
        assert cam.sizes == [size]
        for i, image in enumerate(images):
            alone = cam.cam(image[None].astype(np.float32), class_index=[[0, 1, 2, 1, 0][i]])
            np.testing.assert_allclose(maps[i][0], alone.heatmaps[0], atol=1e-5)
