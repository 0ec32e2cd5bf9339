"""Completion pushed, not polled: one Redis pub/sub subscription per API process wakes the
requests waiting on a job (``?wait=S``, the event stream) the moment a worker announces a
change. The job hash stays the one source of truth: a wake-up only says "read it again" (and
whether the announcement was of an end, so a waiter for the end skips the reads that would
show it running), and a waiter registers before its first read, so an end that happened
before it subscribed is seen by that read. If the subscription drops, waiters still re-read
every ``FALLBACK_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from worker.store import EVENTS

log = logging.getLogger("convscope.api")
FALLBACK_SECONDS = 1.0  # longest a waiter sleeps without re-reading, whatever happens
UNDER_WAY = frozenset({"queued", "running", "progress"})  # announcements of a job not ended


class Change(threading.Event):
    """Set by each announcement of a job's change; ``ended`` is also set by one that may be
    of its end (an end, or a wake-up of unknown cause). A waiter clears both, then reads."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = False

    def announce(self, status: str | None) -> None:
        if status not in UNDER_WAY:
            self.ended = True
        self.set()


class JobEvents:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._waiters: dict[str, set[Change]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.subscribed = threading.Event()

    @contextmanager
    def watch(self, job_id: str) -> Iterator[Change]:
        """An event set whenever ``job_id`` changes (registered before the caller reads)."""
        self._start()
        changed = Change()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(changed)
        try:
            yield changed
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id, set())
                waiting.discard(changed)
                if not waiting:
                    self._waiters.pop(job_id, None)

    def _start(self) -> None:
        with self._lock:  # started lazily: in the serving process, after any fork
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, daemon=True,
                                                name="job-events")
                self._thread.start()

    def _wake(self, job_id: str | None = None, status: str | None = None) -> None:
        with self._lock:
            groups = list(self._waiters.values()) if job_id is None else \
                [self._waiters.get(job_id, set())]
            for group in groups:
                for changed in group:
                    changed.announce(status)

    def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(f"{EVENTS}*")
                self.subscribed.set()
                self._wake()  # anything missed while (re)connecting is read again
                for message in pubsub.listen():
                    channel = message.get("channel") or b""
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    data = message.get("data")
                    status = data.decode() if isinstance(data, bytes) else data
                    self._wake(channel[len(EVENTS):], status if isinstance(status, str) else None)
            except redis.RedisError as exc:
                if self.subscribed.is_set():  # say it once per outage
                    log.warning("job event subscription lost (%s); reconnecting", exc)
                self.subscribed.clear()
            finally:
                # Closed here, by this thread: a dropped subscription left to the garbage
                # collector is closed by whichever thread collects it, which can wait forever
                # on the connection pool's lock at interpreter exit.
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001 - already broken; nothing to release
                    pass
            threading.Event().wait(0.5)
