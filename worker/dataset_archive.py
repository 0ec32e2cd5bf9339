"""Read a dataset's files safely from a ``.zip``, a ``.tar`` (plain, gzip, bzip2 or xz) or a
server folder, without letting it write anywhere or exhaust memory or disk.

Every entry is checked before its bytes are read: its name must stay inside the dataset (no
absolute paths, drive letters or ``..``), it must be a regular file (symlinks, hard links,
devices and FIFOs refuse the whole archive with :class:`UnsafeArchiveError`), and the number
of entries, each file's size and all files' size together are held to :class:`DatasetLimits`
(:class:`ArchiveTooLargeError` beyond). A zip's sizes are checked from its directory before
anything is inflated; a tar is read as a stream (decompressed and checked to its end by
:mod:`worker.tar_streams`), its decompressed bytes counted, its extended headers capped;
every file is read through a bounded reader, so a header that lies about a size is caught as
the bytes arrive. Nothing here writes a file: :class:`Member` hands back bytes, and the
caller decides where they go (see :mod:`worker.dataset_ingest`).
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from worker import tar_streams
from worker.archive_errors import ArchiveTooLargeError, InvalidArchiveError, UnsafeArchiveError
from worker.tar_streams import CHUNK, Metered, decompressed, read_to_the_end

HEADER_BYTES = 2**20  # a tar's extended (pax / GNU long name) headers, each
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a first entry, or an empty zip's directory
_DRIVE = re.compile(r"^[A-Za-z]:")
_LONG_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                 tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


@dataclass(frozen=True)
class DatasetLimits:
    max_files: int = 50_000  # entries of any kind
    max_file_bytes: int = 32 * 2**20  # one file, uncompressed
    max_total_bytes: int = 2 * 2**30  # all files, uncompressed


@dataclass(frozen=True)
class Member:
    """One regular file: its path inside the dataset (POSIX, relative), its size as stated,
    and ``read()`` for its bytes (bounded; call it before asking for the next member)."""

    name: str
    size: int
    read: Callable[[], bytes]


def safe_name(raw: str) -> str:
    """``raw`` as a relative POSIX path inside the dataset, or UnsafeArchiveError."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchiveError(f"the entry {raw!r} points outside the dataset")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"the entry {raw!r} points outside the dataset")
    return "/".join(parts)


class _Budget:
    """Counts entries and bytes against the limits as an archive is read."""

    def __init__(self, limits: DatasetLimits) -> None:
        self.limits, self.files, self.bytes = limits, 0, 0

    def entry(self, name: str, size: int) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise ArchiveTooLargeError(f"more than {self.limits.max_files} entries; that is "
                                       "the limit")
        if size > self.limits.max_file_bytes:
            raise ArchiveTooLargeError(f"{name!r} unpacks to {size} bytes; the limit per file "
                                       f"is {self.limits.max_file_bytes}")
        self.bytes += size
        if self.bytes > self.limits.max_total_bytes:
            raise ArchiveTooLargeError(f"the files unpack to more than "
                                       f"{self.limits.max_total_bytes} bytes; that is the limit")


def _bounded(stream: IO[bytes], name: str, size: int) -> bytes:
    """Exactly ``size`` bytes of ``stream``; InvalidArchiveError past or short of it."""
    data = bytearray()
    while chunk := stream.read(min(CHUNK, size + 1 - len(data))):
        data += chunk
        if len(data) > size:
            raise ArchiveTooLargeError(f"{name!r} unpacks to more than its stated {size} bytes")
    if len(data) != size:
        raise InvalidArchiveError(f"{name!r} ends after {len(data)} of its {size} bytes")
    return bytes(data)


def _zip_members(path: Path, limits: DatasetLimits) -> Iterator[Member]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidArchiveError(f"not a readable zip archive: {exc}") from exc
    with archive:
        budget, infos = _Budget(limits), archive.infolist()
        for info in infos:  # the whole directory first: nothing inflated before it passes
            info.filename = _zip_name(info)
            name = safe_name(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type stated
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(f"the entry {info.filename!r} is not a regular file "
                                         "(a link or a device)")
            if info.flag_bits & 0x1:
                raise InvalidArchiveError(f"the entry {info.filename!r} is encrypted")
            budget.entry(name, info.file_size)
        for info in infos:
            if not info.is_dir() and safe_name(info.filename):
                yield Member(safe_name(info.filename), info.file_size,
                             partial(_zip_read, archive, info))


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's name: without the zip's UTF-8 flag the format says code page 437, but
    most tools write UTF-8 there without the flag; zipfile decodes it as cp437, which gives
    each of its bytes back, so a name whose bytes are UTF-8 is read as UTF-8, and any other
    stays cp437. A name zipfile took from a Unicode path field (Python 3.12 on) is kept."""
    if info.flag_bits & 0x800 or info.filename != info.orig_filename:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:  # not cp437's decoding (taken elsewhere), or its bytes not UTF-8
        return info.filename


def _zip_read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        with archive.open(info) as member:
            return _bounded(member, info.filename, info.file_size)
    except InvalidArchiveError:
        raise
    except Exception as exc:  # a damaged entry is the archive's fault, whatever zipfile says
        raise InvalidArchiveError(f"the entry {info.filename!r} is damaged: {exc}") from exc


class _CappedHeaders(tarfile.TarInfo):
    """A tar header whose extended headers (read whole into memory) are capped in size."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _LONG_HEADERS and self.size > HEADER_BYTES:
            raise ArchiveTooLargeError(f"an extended tar header of {self.size} bytes")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _tar_members(path: Path, limits: DatasetLimits) -> Iterator[Member]:
    # Read as a stream: what is decompressed is the headers (extended ones capped) and the
    # files' stated sizes, which the budget holds to the limits before they are read.
    with open(path, "rb") as file:
        raw = Metered(file)
        with decompressed(raw) as stream:
            try:
                archive = tarfile.open(fileobj=stream, mode="r|", tarinfo=_CappedHeaders)
            except Exception as exc:  # the decompressors' own (zlib.error, LZMAError) too
                raise InvalidArchiveError(f"not a readable tar archive: {exc}") from exc
            with archive:
                yield from _tar_entries(archive, _Budget(limits))
            raw.limit = raw.count + tar_streams.TRAILER_BYTES  # the file's bytes from here
            read_to_the_end(stream)


def _tar_entries(archive: tarfile.TarFile, budget: _Budget) -> Iterator[Member]:
    for info in _tar_infos(archive):
        name = safe_name(info.name)
        if not (info.isreg() or info.isdir()) or info.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeArchiveError(f"the entry {info.name!r} is not a regular file "
                                     "(a link, a device or a FIFO)")
        budget.entry(name, info.size if info.isreg() else 0)
        stream = archive.extractfile(info) if info.isreg() and name else None
        if stream is not None:
            yield Member(name, info.size, partial(_tar_read, stream, info.name, info.size))


def _tar_read(stream: IO[bytes], name: str, size: int) -> bytes:
    try:
        return _bounded(stream, name, size)
    except InvalidArchiveError:
        raise
    except Exception as exc:  # a stream cut short or damaged (tarfile, EOFError, zlib.error)
        raise InvalidArchiveError(f"the entry {name!r} is damaged: {exc}") from exc


def _tar_infos(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    try:
        while (info := archive.next()) is not None:
            yield info
    except InvalidArchiveError:
        raise
    except (tarfile.TarError, OSError, EOFError) as exc:  # zlib.error is not one
        raise InvalidArchiveError(f"the tar archive is damaged: {exc}") from exc
    except Exception as exc:
        raise InvalidArchiveError(f"the tar archive is damaged: {exc}") from exc


def folder_members(root: Path, limits: DatasetLimits,
                   outside: Callable[[Path], bool]) -> Iterator[Member | tuple[str, str]]:
    """The regular files under ``root`` (resolved) in sorted order, hidden folders left out;
    a link whose target is ``outside`` the allowed folders, or a linked folder, is given as
    ``(name, reason)`` instead."""
    budget = _Budget(limits)
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for entry in sorted(files) + [d for d in dirs if Path(folder, d).is_symlink()]:
            path = Path(folder, entry)
            name, (real, size) = path.relative_to(root).as_posix(), _place(path, outside)
            if isinstance(size, str):
                yield name, size
                continue
            budget.entry(name, size)
            yield Member(name, size, partial(_read_file, real, name, size))


def _place(path: Path, outside: Callable[[Path], bool]) -> tuple[Path, int | str]:
    """Where ``path`` leads and its size, or why it is no file of the dataset."""
    try:
        real = path.resolve()
        if outside(real):
            return real, "a link to a place outside the allowed dataset folders"
        if not real.is_file():
            return real, "a linked folder (not followed) or not a regular file"
        return real, real.stat().st_size
    except RuntimeError:  # before Python 3.13
        return path, "a link that cannot be followed (a loop of links)"
    except OSError as exc:
        return path, f"cannot be read ({exc.strerror or type(exc).__name__})"


def _read_file(path: Path, name: str, size: int) -> bytes:
    with open(path, "rb") as stream:
        return _bounded(stream, name, size)


def archive_members(path: Path, limits: DatasetLimits) -> Iterator[Member]:
    """The regular files of the archive at ``path``: a zip by its leading magic bytes, then
    a tar, then a zip with something before it (``zipfile.is_zipfile`` looks at the end,
    where it finds the directory of a zip stored as a tar's last file)."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(4)
    except FileNotFoundError as exc:  # a worker whose data dir is not the API's, or a re-run
        raise InvalidArchiveError("the uploaded archive is gone: no worker can read it (do "
                                  "the API and the workers share one data dir?)") from exc
    except OSError as exc:
        raise InvalidArchiveError(f"the archive cannot be read ({exc.strerror})") from exc
    if head in _ZIP_MAGIC:
        return _zip_members(path, limits)
    try:
        is_tar = tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError, EOFError):
        is_tar = False
    if is_tar:
        return _tar_members(path, limits)
    if zipfile.is_zipfile(path):  # a zip with something before it (a self-extractor's stub)
        return _zip_members(path, limits)
    raise InvalidArchiveError("not a .zip, .tar, .tar.gz, .tar.bz2 or .tar.xz archive")
