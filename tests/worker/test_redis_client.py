"""``worker.redis_client``: the clients the API and the worker make pack a command of over
``LARGE_COMMAND`` bytes by redis-py's own packer (its large values handed on, not copied)
and any other by hiredis; the bytes on the wire are hiredis's, byte for byte, and large
values round-trip through a real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator

import hiredis
import pytest
import redis

from tests.pipeline import empty_database
from worker.redis_client import LARGE_COMMAND, Packer, connect
from worker.store import JobStore


@pytest.fixture(scope="module")
def db_url(redis_url: str) -> Iterator[str]:
    with empty_database(redis_url, "the redis client tests") as url:
        yield url


BIG = LARGE_COMMAND // 2 + 1  # two such values make a large command, one does not


@pytest.mark.parametrize(("args", "large"), [
    (("SET", "key", b"x" * 10), 0),
    (("HGET", "convscope:job:abc", "status"), 0),
    (("SET", "key", os.urandom(BIG)), 0),
    (("RPUSH", "key", *[os.urandom(12_300) for _ in range(16)]), 0),
    (("EVALSHA", "ab" * 20, 2, "k1", "k2", os.urandom(BIG), "é", 1.5, os.urandom(BIG)), 2),
    (("HSET", "h", "field", os.urandom(LARGE_COMMAND), "other", memoryview(os.urandom(9000))),
     2),
    (("SET", "result", "r" * (LARGE_COMMAND + 1)), 1),
    (("CONFIG GET", "maxmemory"), 0),
])
def test_the_packed_command_is_the_bytes_hiredis_packs(args: tuple, large: int) -> None:
    """The same RESP bytes as ``hiredis.pack_command`` (an independent packer). A command
    of over ``LARGE_COMMAND`` bytes is handed on in pieces, each value over the cutoff as it
    is (not copied); any other is one buffer."""
    pieces = Packer().pack(*args)
    reference_args = tuple(a.tobytes() if isinstance(a, memoryview) else a for a in args)
    if args[0] == "CONFIG GET":  # hiredis takes a two-word command as its two words
        reference_args = ("CONFIG", "GET", *args[1:])
    assert b"".join(bytes(p) for p in pieces) == hiredis.pack_command(reference_args)
    if not large:
        assert len(pieces) == 1
        return
    for value in [a for a in args if isinstance(a, bytes | memoryview) and len(a) > 6000]:
        assert any(p is value for p in pieces), "a large value was copied"
    assert len(pieces) >= 1 + large


def test_large_values_round_trip(db_url: str) -> None:
    r = connect(db_url)
    values = [os.urandom(150_000) for _ in range(4)] + [b"", b"small", "é".encode()]
    r.rpush("convscope-test:list", *values)
    assert r.lrange("convscope-test:list", 0, -1) == values
    pipe = r.pipeline()
    pipe.set("convscope-test:a", values[0]).get("convscope-test:a")
    assert pipe.execute() == [True, values[0]]
    r.delete("convscope-test:list", "convscope-test:a")


def _packers(client: redis.Redis) -> set[type]:
    conn = client.connection_pool.get_connection()
    try:
        return {type(conn._command_packer)}
    finally:
        client.connection_pool.release(conn)


def test_every_client_of_the_store_and_the_api_uses_the_packer(db_url: str) -> None:
    from service.backend import Backend
    from worker.settings import Settings

    store = JobStore.from_url(db_url)
    assert _packers(store.r) == {Packer}
    # the lease renewals' client is made from a copy of these (worker/claims.py)
    assert isinstance(store.r.connection_pool.connection_kwargs["command_packer"],
                      Packer)
    backend = Backend(Settings.from_env({}, redis_url=db_url))
    assert _packers(backend.store.r) == {Packer}
    assert _packers(backend.events._client) == {Packer}


def test_the_workers_other_clients_use_the_packer(db_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from worker import dataset_ingest, filter_cache, settings

    def clear() -> None:
        for cached in (settings.get_settings, filter_cache.redis_client, dataset_ingest._records):
            cached.cache_clear()

    monkeypatch.setenv("CONVSCOPE_REDIS_URL", db_url)
    clear()
    try:
        assert _packers(filter_cache.redis_client()) == {Packer}
        assert _packers(dataset_ingest._records(db_url, 60).r) == {Packer}
    finally:
        monkeypatch.undo()
        clear()


def test_small_commands_are_packed_by_hiredis_and_large_ones_are_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """hiredis (a dependency) packs a small command 7x faster than redis-py's own packer,
    and a command of one value under ``LARGE_COMMAND`` with one send."""
    from redis import utils

    assert utils.HIREDIS_AVAILABLE, "hiredis is missing, or too old for redis-py"
    calls: list[tuple] = []
    real = hiredis.pack_command
    monkeypatch.setattr(hiredis, "pack_command", lambda args: calls.append(args) or real(args))
    packer = Packer()
    packer.pack("HGET", "convscope:job:abc", "status")
    packer.pack("SET", "key", os.urandom(LARGE_COMMAND - 6))  # with "SET" and "key": at the limit
    assert len(calls) == 2
    packer.pack("SET", "key", os.urandom(LARGE_COMMAND + 1))
    assert len(calls) == 2
