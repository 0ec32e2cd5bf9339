"""A tar's compressed stream, read as tarfile's ``r|*`` mode reads it but checked to its end.

tarfile's stream mode decompresses gzip, bzip2 and xz itself and stops at the tar's end
marker: a gzip stream's CRC and length, and whatever follows the marker, were never read, so
a byte changed inside an archive stored without compression was accepted. Here the stream is
decompressed by Python's own readers (:func:`decompressed`, told by the stream's first
bytes), which check those when they reach the stream's end, and :func:`read_to_the_end` reads
on past the tar's end marker, bounded by :data:`TRAILER_BYTES` both of decompressed bytes and
of the file's (:class:`Metered`: empty gzip members give no bytes but cost time to parse).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import re
from collections.abc import Callable
from typing import IO, Any

from worker.archive_errors import ArchiveTooLargeError, InvalidArchiveError

CHUNK = 2**20
TRAILER_BYTES = 16 * 2**20  # after a tar's end marker (a record's padding is 10 KiB)

# The compressed streams tarfile's "r|*" took, by their first bytes (bzip2: "BZh", the block
# size, the block magic; LZMA-alone: its usual properties and dictionary bytes).
COMPRESSED: tuple[tuple[re.Pattern[bytes], Callable[[Any], Any]], ...] = (
    (re.compile(rb"\x1f\x8b\x08"), lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (re.compile(rb"BZh[1-9]1AY&SY", re.DOTALL), bz2.BZ2File),
    (re.compile(rb"\xfd7zXZ\x00|\x5d\x00\x00\x80"), lzma.LZMAFile))


class Metered:
    """A file's reads, counted; past ``limit`` (once set) ArchiveTooLargeError: what follows
    a tar's end is held to TRAILER_BYTES of the file as well as of what it decompresses to
    (empty gzip members cost time to parse and give no bytes)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.count = file, 0
        self.limit: int | None = None

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise ArchiveTooLargeError(f"more than {TRAILER_BYTES} bytes follow the tar "
                                       "archive's end")
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()


def decompressed(raw: Metered) -> Any:
    """``raw`` decompressed by its magic bytes (gzip, bzip2, xz), or as it is. These readers
    check the stream's checksums and length when they reach its end, which tarfile's own
    stream reading never does."""
    head = raw.read(16)
    raw.seek(0)
    for magic, opener in COMPRESSED:
        if magic.match(head):
            return opener(raw)
    return contextlib.nullcontext(raw)


def read_to_the_end(stream: IO[bytes]) -> None:
    """Read what follows the tar's end marker (its padding, and the compressed stream's
    trailer): a damaged or cut trailer is InvalidArchiveError, as a damaged entry is; more
    than TRAILER_BYTES there is ArchiveTooLargeError."""
    seen = 0
    try:
        while chunk := stream.read(CHUNK):
            seen += len(chunk)
            if seen > TRAILER_BYTES:
                raise ArchiveTooLargeError(f"more than {TRAILER_BYTES} bytes follow the tar "
                                           "archive's end")
    except InvalidArchiveError:
        raise
    except gzip.BadGzipFile as exc:
        if not str(exc).startswith("Not a gzipped file"):
            raise InvalidArchiveError(f"the archive is damaged at its end: {exc}") from exc
        # bytes that start no gzip member after whole ones (each checked as it ended): gzip
        # itself ignores such trailing garbage
    except Exception as exc:  # EOFError (cut short), zlib.error, LZMAError, OSError
        raise InvalidArchiveError(f"the archive is damaged at its end: {exc}") from exc
