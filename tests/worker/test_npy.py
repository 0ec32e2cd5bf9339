"""The ``.npy`` fast path against NumPy's own writer and reader."""

from __future__ import annotations

import io

import numpy as np
import pytest

from worker.npy import load_npy, npy_bytes

ARRAYS = [np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3),
          np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7), np.arange(5, dtype=np.int64),
          np.float32(2.5).reshape(()), np.zeros((0, 3), np.float32),
          np.ones((2, 3), np.dtype(">f4")), np.arange(6.0).reshape(2, 3).T]


def numpy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_bytes_read_back_by_numpy(array: np.ndarray) -> None:
    got = np.load(io.BytesIO(npy_bytes(array)), allow_pickle=False)
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    if array.flags.c_contiguous:  # the same bytes NumPy writes
        assert npy_bytes(array) == numpy_bytes(array)


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_numpy_files_read_back(array: np.ndarray) -> None:
    got = load_npy(numpy_bytes(array))
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


def test_a_truncated_file_is_refused() -> None:
    raw = npy_bytes(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        load_npy(raw[:-4])
