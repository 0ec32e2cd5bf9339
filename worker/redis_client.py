"""Redis clients that send large values without copying them into one command buffer.

With hiredis installed, redis-py packs every command with ``hiredis.pack_command``, which
copies all arguments into one buffer. Measured here (client CPU per command, a real Redis),
that costs little while the command is small, and jumps once it passes about 200 KB: an
RPUSH of 4 values of 50 KB took 125 µs, of 5 values 480 µs, of 16 values of 150 KB (a job's
224² inputs, or its pictures) 4.3 ms. redis-py's own packer joins the small arguments and
hands every value over 6,000 bytes to the socket as it is, one send each: 179, 171 and
854 µs. Below the jump hiredis is the cheaper (one send; 0.5 µs against 3.6 to pack an
HGET; 177 against 299 µs for 16 values of 12 KB), so :class:`Packer` picks by the size of
the command. Replies are still parsed by hiredis (the parser is chosen apart from the
packer). Every client of the API and the worker is made here or from a pool made here.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.connection import Encoder, HiredisRespSerializer, PythonRespSerializer
from redis.utils import HIREDIS_AVAILABLE

BUFFER_CUTOFF = 6000  # redis-py's own: arguments up to this many bytes are joined
LARGE_COMMAND = 224 * 1024  # bytes of arguments past which redis-py's packer is the cheaper
SIZED = (bytes, str, bytearray, memoryview)  # len(): bytes, or a 1-D view's items


class Packer:
    """RESP packing: a command whose arguments hold over :data:`LARGE_COMMAND` bytes by
    redis-py's own packer (large values handed on, not copied), any other by hiredis.
    Stateless: one may serve every connection of a pool."""

    def __init__(self) -> None:
        self._large = PythonRespSerializer(BUFFER_CUTOFF,
                                           Encoder("utf-8", "strict", False).encode)
        self._small = HiredisRespSerializer() if HIREDIS_AVAILABLE else self._large

    def pack(self, *args: Any) -> list:
        size = 0
        for arg in args:
            if isinstance(arg, SIZED):
                size += len(arg)
        return (self._large if size > LARGE_COMMAND else self._small).pack(*args)


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """``redis.Redis.from_url(url, **kwargs)`` with a :class:`Packer`."""
    return redis.Redis.from_url(url, command_packer=Packer(), **kwargs)


def blocking_pool(url: str, **kwargs: Any) -> redis.BlockingConnectionPool:
    """``redis.BlockingConnectionPool.from_url(url, **kwargs)`` with a :class:`Packer`."""
    return redis.BlockingConnectionPool.from_url(url, command_packer=Packer(), **kwargs)
