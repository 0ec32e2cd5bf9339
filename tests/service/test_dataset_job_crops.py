"""The merge of a ``top_examples`` job reads no image: its chunks carry the crops. The merge is
held back (its lease taken, as if another worker ran it) until every chunk is done; then the
dataset's image files are moved away and the lease dropped, so the sweeper sends the merge
again. Every ``crops_<channel>`` tile equals the unit's box cut by NumPy from the original
image, and the chunk partials are gone from Redis after the merge. A real Redis and worker."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from models.top_examples import TopExamplesPartial
from tests.pipeline import wait_until
from tests.service.dataset_job_stack import A, dataset_job_stack
from tests.service.job_http import decode_png, poll
from tests.service.test_atlas_crops import _tiles
from worker.chunks import RUNNING_UNITS, member
from worker.dataset_crops import BACKGROUND, MARK, MIN_TILE
from worker.datasets import open_dataset

N, CHUNK, LAYER, K, CHANNELS = 24, 6, "conv3", 3, [0, 5, 9]


def _assert_tile(tile: np.ndarray, original: np.ndarray, box: list[int], scale: int) -> None:
    """The tile shows ``original[y0:y1, x0:x1]`` scaled by ``scale`` at its top left, grey
    beyond; the ring (magenta) is the only other thing drawn."""
    x0, y0, x1, y1 = box
    want = np.full_like(tile, BACKGROUND)
    want[:(y1 - y0) * scale, :(x1 - x0) * scale] = (
        original[y0:y1, x0:x1].repeat(scale, axis=0).repeat(scale, axis=1))
    ring = (tile == MARK).all(axis=-1)
    assert ring.any(), box
    np.testing.assert_array_equal(tile[~ring], want[~ring])


def test_the_merge_reads_no_image_and_drops_the_partials(settings, tmp_path) -> None:
    with dataset_job_stack(settings, tmp_path, 1, "the dataset crops test") as stack:
        dataset = stack.shapes_dataset(N, seed=3)
        manifest = open_dataset(stack.settings.data_dir, dataset)
        originals = {image.file: np.asarray(Image.open(manifest.root / image.file)
                                            .convert("RGB")) for image in manifest.images}
        res = stack.submit(dataset, layer=LAYER, k=K, chunk_images=CHUNK, channels=CHANNELS)
        job_id, chunks, records = res.get_json()["id"], N // CHUNK, stack.records()
        lease = records.store.lease_key(member(job_id, chunks))  # the merge's unit
        stack.r.set(lease, "another worker", ex=600)
        stack.r.zadd(RUNNING_UNITS, {member(job_id, chunks): time.time()})

        wait_until(lambda: records.done_count(job_id) == chunks, 240, "every chunk")
        assert stack.client.get(f"/v1/jobs/{job_id}", headers=A).get_json()["status"] \
            == "running", "merged before its lease was taken"
        partials = [stack.r.get(records.key(job_id, f"partial:{i}")) for i in range(chunks)]
        assert all(TopExamplesPartial.from_bytes(raw or b"{}\n").patches for raw in partials)
        for image in manifest.images:
            path = manifest.root / image.file
            path.rename(path.with_name(path.name + ".gone"))
        stack.r.delete(lease)  # "the other worker" died: the sweeper sends the merge again

        job = poll(stack.client, job_id, timeout=120, headers=A)
        assert job["status"] == "succeeded", job
        assert (job["result"]["images"], job["result"]["corrupt"]) == (N, 0)
        assert not any(stack.r.exists(records.key(job_id, f"partial:{i}"))
                       for i in range(chunks))
        assert stack.records().runs(job_id) == chunks + 1  # each chunk once, one merge
        for channel in job["result"]["channels"]:
            top = channel["top"]
            field = max(max(t["crop"][3] - t["crop"][1], t["crop"][2] - t["crop"][0])
                        for t in top)
            scale = -(-MIN_TILE // field)
            res = stack.client.get(f"/v1/jobs/{job_id}/artifacts/crops_{channel['index']}",
                                   headers=A)
            tiles = _tiles(res.data, len(top), field * scale)
            assert decode_png(res.data).shape[1] > len(top) * field * scale
            for t, tile in zip(top, tiles, strict=True):
                _assert_tile(tile, originals[t["file"]], t["crop"], scale)
