"""Hostile ``.keras`` archives, built with :mod:`zipfile` (and a few patched header bytes), and
a recorder of the files a process writes, for the hostile-archive tests.

- :func:`legit_archive` — a real, small Keras model (``tiny_models.functional``) saved as
  ``.keras``; :func:`repack` copies its members, adds others, writes padding members that
  compress ~1000:1 (a 64 MiB member costs ~64 KB of archive) without holding them in memory.
- :func:`lie_about_size` patches the uncompressed size a member's headers state;
  :func:`lie_about_count` the member count of the end-of-directory record.
- :class:`WriteLog` lists the paths opened for writing, or made as folders, while it is active,
  seen by a CPython audit hook: writes by Keras, zipfile and tempfile count, not only ours.
"""

from __future__ import annotations

import os
import struct
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.models import tiny_models as tm

MiB = 2**20
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def legit_archive(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tm.functional().save(path)
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def repack(path: Path, files: dict[str, bytes], padding: dict[str, int] | None = None,
           fill: bytes = b" ") -> Path:
    """Write ``files`` and, for each ``name: size`` of ``padding``, a member of ``size``
    ``fill`` bytes (appended to ``files[name]`` when both name it), deflated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    padding = padding or {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in {**files, **padding}:
            with archive.open(name, "w") as member:
                member.write(files.get(name, b""))
                left = padding.get(name, 0)
                while left > 0:
                    member.write(fill * min(left, MiB))
                    left -= MiB
    return path


def _patch(data: bytearray, signature: bytes, name: bytes, at: int, value: int,
           name_length_at: int, name_at: int) -> int:
    patched, start = 0, 0
    while (start := data.find(signature, start)) >= 0:
        (length,) = struct.unpack_from("<H", data, start + name_length_at)
        if data[start + name_at:start + name_at + length] == name:
            struct.pack_into("<L", data, start + at, value)
            patched += 1
        start += len(signature)
    return patched


def lie_about_size(path: Path, name: str, declared: int) -> None:
    """Make the central directory and the local header say ``name`` unpacks to ``declared``
    bytes (its data and checksum unchanged)."""
    data = bytearray(path.read_bytes())
    central = _patch(data, b"PK\x01\x02", name.encode(), 24, declared, 28, 46)
    local = _patch(data, b"PK\x03\x04", name.encode(), 22, declared, 26, 30)
    assert central == local == 1, (central, local)
    path.write_bytes(bytes(data))


def lie_about_count(path: Path, count: int) -> None:
    """Make the end-of-directory record (the archive's last 22 bytes) claim ``count`` members."""
    data = bytearray(path.read_bytes())
    assert data[-22:-18] == b"PK\x05\x06"
    struct.pack_into("<HH", data, len(data) - 22 + 8, count, count)
    path.write_bytes(bytes(data))


class WriteLog:
    """``with WriteLog.recording() as paths:`` — the absolute paths this process opened for
    writing, or made as folders, in the block."""

    _active: list[list[str]] = []
    _installed = False

    @staticmethod
    def _hook(event: str, args: tuple) -> None:
        if not WriteLog._active:
            return
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & WRITE_FLAGS))
        elif event == "os.mkdir":
            path, writes = args[0], True
        else:
            return
        if writes and isinstance(path, (str, bytes, os.PathLike)):
            WriteLog._active[-1].append(os.path.abspath(os.fsdecode(path)))

    @classmethod
    @contextmanager
    def recording(cls) -> Iterator[list[str]]:
        if not cls._installed:  # audit hooks cannot be removed: one, idle when not recording
            sys.addaudithook(cls._hook)
            cls._installed = True
        paths: list[str] = []
        cls._active.append(paths)
        try:
            yield paths
        finally:
            cls._active.pop()


def outside(paths: list[str], folder: Path) -> list[str]:
    """The ``paths`` not inside ``folder``."""
    root = str(folder.resolve())
    return [p for p in paths if not (os.path.realpath(p) + os.sep).startswith(root + os.sep)]
