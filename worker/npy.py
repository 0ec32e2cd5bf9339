"""NumPy arrays as ``.npy`` bytes (no pickle): how inputs and artifacts are stored.

Version 1.0 files of plain little-endian or byte dtypes, C order, are written and read here
directly (the header is a short dict literal; NumPy's own reader parses it with ``ast``,
which cost more than the copy for a 64×64 image); anything else goes through NumPy.
"""

from __future__ import annotations

import io
import re

import numpy as np

MAGIC = b"\x93NUMPY\x01\x00"
_HEADER = re.compile(r"\{'descr': '([<|][a-z]\d+)', 'fortran_order': False, "
                     r"'shape': \(((?:\d+, )*\d*|\d+,)\), \}\s*\n")


def npy_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array)
    descr = array.dtype.str
    if descr[0] not in "<|" or array.dtype.hasobject or array.dtype.names is not None:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        return buf.getvalue()
    shape = repr(tuple(int(n) for n in array.shape))
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    # As NumPy pads it: magic, length, header, spaces, newline, to a multiple of 64 bytes.
    total = len(MAGIC) + 2 + len(header) + 1
    header += " " * (-total % 64) + "\n"
    return MAGIC + len(header).to_bytes(2, "little") + header.encode("latin1") + \
        np.ascontiguousarray(array).tobytes()


def load_npy(raw: bytes) -> np.ndarray:
    """The array in ``.npy`` bytes (a read-only view for the plain case)."""
    if raw[:8] == MAGIC:
        length = int.from_bytes(raw[8:10], "little")
        match = _HEADER.fullmatch(raw[10:10 + length].decode("latin1"))
        if match:
            shape = tuple(int(n) for n in match.group(2).replace(",", " ").split())
            dtype = np.dtype(match.group(1))
            count = int(np.prod(shape, dtype=np.int64))
            if len(raw) - 10 - length == count * dtype.itemsize:
                return np.frombuffer(raw, dtype, count, 10 + length).reshape(shape)
    return np.load(io.BytesIO(raw), allow_pickle=False)
