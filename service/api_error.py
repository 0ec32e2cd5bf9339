"""The error every client call raises for a problem+json answer (or no answer), and the
check of the API's URL that the client and the CLI share."""

from __future__ import annotations

from urllib.parse import urlsplit


def is_api_url(url: str) -> bool:
    """Whether ``url`` can be the API's address: http(s) with a host."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class ApiError(RuntimeError):
    """A problem+json answer: ``status``, ``code`` and the server's ``detail``."""

    def __init__(self, status: int, code: str, detail: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail
        self.retry_after = retry_after  # seconds, from the Retry-After header (429, 503)
