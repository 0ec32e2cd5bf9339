"""Redis clients that send large values without copying them into one command buffer.

With hiredis installed, redis-py packs every command with ``hiredis.pack_command``, which
copies all arguments into one buffer: measured here, 3.7 ms for a command carrying 16 values
of 150 KB (a job's model-sized 224² inputs, or its overlays). redis-py's own packer joins
the small arguments and hands every value over 6,000 bytes to the socket as it is: 0.01 ms
for the same command. For small commands hiredis is the faster one (0.5 µs against 3.6 for
an HGET, 1.9 against 13 for a job's 13-argument script call), so :class:`Packer` picks by
the command. Replies are still parsed by hiredis (the parser is chosen apart from the
packer). Every client of the API and the worker is made here or from a pool made here.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.connection import Encoder, HiredisRespSerializer, PythonRespSerializer
from redis.utils import HIREDIS_AVAILABLE

BUFFER_CUTOFF = 6000  # redis-py's own: arguments up to this many bytes are joined
LARGE_TYPES = (bytes, str, bytearray, memoryview)  # len(): bytes, or a 1-D view's items


class Packer:
    """RESP packing: a command with an argument over :data:`BUFFER_CUTOFF` bytes by redis-py's
    own packer (large values handed on, not copied), any other by hiredis. Stateless: one
    may serve every connection of a pool."""

    def __init__(self) -> None:
        self._large = PythonRespSerializer(BUFFER_CUTOFF,
                                           Encoder("utf-8", "strict", False).encode)
        self._small = HiredisRespSerializer() if HIREDIS_AVAILABLE else self._large

    def pack(self, *args: Any) -> list:
        for arg in args:
            if isinstance(arg, LARGE_TYPES) and len(arg) > BUFFER_CUTOFF:
                return self._large.pack(*args)
        return self._small.pack(*args)


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """``redis.Redis.from_url(url, **kwargs)`` with a :class:`Packer`."""
    return redis.Redis.from_url(url, command_packer=Packer(), **kwargs)


def blocking_pool(url: str, **kwargs: Any) -> redis.BlockingConnectionPool:
    """``redis.BlockingConnectionPool.from_url(url, **kwargs)`` with a :class:`Packer`."""
    return redis.BlockingConnectionPool.from_url(url, command_packer=Packer(), **kwargs)
