"""Bad input is refused by the API with problem+json and a stable code, before anything is
queued; every image mode Pillow reads is accepted and converted to the model's RGB input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import redis
from PIL import Image

from tests.service.job_http import QueueCount, assert_problem, encode, load_npy, run, submit

GOOD = encode(np.full((64, 64, 3), 120, np.uint8))


@pytest.fixture(scope="module")
def r(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``side × side`` RGB pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


# case id -> (submit keyword arguments, status, code)
CASES = {
    "not_an_image": ({"images": [b"this is plain text, not a picture"]}, 400, "invalid_image"),
    "truncated_png": ({"images": [GOOD[: len(GOOD) // 2]]}, 400, "invalid_image"),
    "empty_file": ({"images": [b""]}, 400, "invalid_image"),
    "bomb_header": ({"images": [bomb_png()]}, 413, "image_too_large"),
    "over_pixel_limit": ({"images": [encode(np.zeros((1000, 1100, 3), np.uint8))]}, 413,
                         "image_too_large"),
    "bad_image_after_good": ({"images": [GOOD, b"GIF89a-not-really"]}, 400, "invalid_image"),
    "unknown_model": ({"images": [GOOD], "model": "no-such-model"}, 404, "unknown_model"),
    "unknown_layer": ({"images": [GOOD], "layer": "conv99"}, 400, "unknown_layer"),
    "gradcam_dense_layer": ({"kind": "gradcam", "images": [GOOD], "layer": "predictions"}, 400,
                            "layer_not_spatial"),
    "gradcam_pooled_layer": ({"kind": "gradcam", "images": [GOOD], "layer": "gap"}, 400,
                             "layer_not_spatial"),
    "explain_pool_layer": ({"kind": "explain", "images": [GOOD], "layer": "pool1"}, 400,
                           "layer_not_conv"),
    "explain_filter_out_of_range": ({"kind": "explain", "images": [GOOD], "layer": "conv1",
                                     "options": {"filter": 16}}, 400, "filter_out_of_range"),
    "explain_position_out_of_range": ({"kind": "explain", "images": [GOOD], "layer": "conv3",
                                       "options": {"y": 16}}, 400, "position_out_of_range"),
    "filters_index_out_of_range": ({"kind": "filters", "layer": "conv2",
                                    "options": {"filters": [0, 32]}}, 400,
                                   "filter_out_of_range"),
    "activation_channel_out_of_range": ({"images": [GOOD], "layer": "conv1",
                                         "options": {"channels": [16]}}, 400,
                                        "filter_out_of_range"),
    "class_out_of_range": ({"kind": "gradcam", "images": [GOOD],
                            "options": {"class_index": 6}}, 400, "class_out_of_range"),
    "malformed_options": ({"images": [GOOD], "options": '{"channels": [1,'}, 400,
                          "invalid_options"),
    "options_not_an_object": ({"images": [GOOD], "options": "[1, 2]"}, 400, "invalid_options"),
    "unknown_option": ({"images": [GOOD], "options": {"chanels": [1]}}, 400, "invalid_options"),
    "unknown_cam_method": ({"kind": "gradcam", "images": [GOOD],
                            "options": {"method": "gradcam+++"}}, 400, "invalid_options"),
    "too_many_steps": ({"kind": "filters", "layer": "conv2", "options": {"steps": 201}}, 400,
                       "invalid_options"),
    "too_many_images": ({"images": [GOOD] * 5}, 400, "too_many_images"),
    "missing_image": ({"images": []}, 400, "missing_image"),
    "unknown_kind": ({"kind": "deepdream", "images": [GOOD]}, 400, "bad_request"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_before_queueing(client, r: redis.Redis, case: str) -> None:
    kwargs, status, code = CASES[case]
    kwargs = dict(kwargs)
    kind = kwargs.pop("kind", "activations")
    images = kwargs.pop("images", [])
    before = QueueCount.read(r)
    listed = len(client.get("/v1/jobs?limit=500").get_json()["jobs"])
    assert_problem(submit(client, kind, images, **kwargs), status, code)
    assert QueueCount.read(r) == before
    assert len(client.get("/v1/jobs?limit=500").get_json()["jobs"]) == listed


def test_body_over_max_content_length(client, r: redis.Redis, settings) -> None:
    before = QueueCount.read(r)
    listed = len(client.get("/v1/jobs?limit=500").get_json()["jobs"])
    big = b"\0" * (settings.max_content_length + 1)
    assert_problem(submit(client, "activations", [big]), 413, "payload_too_large")
    assert QueueCount.read(r) == before
    assert len(client.get("/v1/jobs?limit=500").get_json()["jobs"]) == listed


def _grey(size: tuple[int, int]) -> tuple[bytes, tuple]:
    return encode(Image.new("L", size, 100)), (100, 100, 100)


def _rgba(size: tuple[int, int]) -> tuple[bytes, tuple]:
    return encode(Image.new("RGBA", size, (10, 200, 30, 0))), (255, 255, 255)  # over white


def _palette(size: tuple[int, int]) -> tuple[bytes, tuple]:
    img = Image.new("P", size, 0)
    img.putpalette([200, 50, 25] * 256)
    return encode(img), (200, 50, 25)


def _sixteen_bit(size: tuple[int, int]) -> tuple[bytes, tuple]:
    img = Image.fromarray(np.full(size[::-1], 65535, np.uint16))
    assert img.mode == "I;16"
    return encode(img), (255, 255, 255)


def _cmyk_jpeg(size: tuple[int, int]) -> tuple[bytes, None]:
    return encode(Image.new("CMYK", size, (0, 255, 255, 0)), "JPEG", quality=95), None


MODES = {"L": _grey, "RGBA": _rgba, "P": _palette, "I;16": _sixteen_bit, "CMYK": _cmyk_jpeg}


@pytest.mark.parametrize("mode", list(MODES))
def test_image_modes_are_accepted(client, shapes_model, mode: str) -> None:
    from models.activations import ActivationExtractor

    data, colour = MODES[mode]((50, 40))  # width 50, height 40: resized to 64×64
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == mode
    job = run(client, "activations", [data], layer="conv1")
    info = job["inputs"][0]
    assert info["original_size"] == [40, 50] and info["resized_size"] == [64, 64]
    assert info["mode"] == mode
    acts = load_npy(client.get(f"/v1/jobs/{job['id']}/artifacts/activations").data)
    if colour is None:  # lossy JPEG: no exact reference; the feature maps still exist
        assert acts.shape == (64, 64, 16)
        return
    # A constant colour stays constant through the resize, so the model saw exactly this.
    expected = np.broadcast_to(np.asarray(colour, np.float32), (1, 64, 64, 3))
    direct = ActivationExtractor(shapes_model, "conv1")(expected)
    np.testing.assert_allclose(acts, direct.activations[0], atol=1e-5)


def test_exif_rotated_jpeg_is_turned_upright(client) -> None:
    stored = np.zeros((30, 40, 3), np.uint8)  # stored 40 wide × 30 high
    stored[:, :20] = (250, 250, 250)  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    job = run(client, "activations", [data, encode(stored, "JPEG", quality=95)], layer="conv1")
    upright, plain = job["inputs"]
    assert upright["original_size"] == [40, 30]  # shown 30 wide × 40 high
    assert plain["original_size"] == [30, 40]
    assert upright["resized_size"] == plain["resized_size"] == [64, 64]
