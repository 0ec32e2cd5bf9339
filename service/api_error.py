"""The error every client call raises for a problem+json answer (or no answer)."""

from __future__ import annotations


class ApiError(RuntimeError):
    """A problem+json answer: ``status``, ``code`` and the server's ``detail``."""

    def __init__(self, status: int, code: str, detail: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail
        self.retry_after = retry_after  # seconds, from the Retry-After header (429, 503)
