"""The ways an uploaded archive is refused (each with the API's error code)."""

from __future__ import annotations


class InvalidArchiveError(ValueError):
    """Not an archive convscope can read, or a damaged one."""

    code = "invalid_archive"


class UnsafeArchiveError(InvalidArchiveError):
    """An entry would leave the dataset's folder, or is not a regular file."""

    code = "unsafe_archive"


class ArchiveTooLargeError(InvalidArchiveError):
    """The archive would unpack to more than :class:`DatasetLimits` allows."""

    code = "archive_too_large"
