"""Nothing stuck: jobs whose worker died are queued again, and batch queues are never left
without a task message.

Every worker's main process sweeps every few seconds (one sweep at a time across all hosts,
under a short Redis lock):

- A job in the running set whose lease has lapsed (its owner was killed, its host lost, or
  it lost Redis mid-job) is queued again, exactly once (one atomic script), with ``attempts``
  counted on the job, and sent its own task message: a job that was running when its worker
  died runs alone next time, so a job that kills its worker takes no batch with it. A job
  that has lost its worker :data:`MAX_ATTEMPTS` times fails with ``worker_lost``.
- A batch queue with jobs and no pending message (the message was lost with an API process,
  or its marker lapsed) is sent one.

And every :data:`FILES_SECONDS`, each worker process (not one for all: hosts may keep
datasets on disks of their own) removes the folders of uploaded datasets whose record has
expired (:func:`worker.dataset_ingest.remove_orphans`): a dataset's files live as long as
its record, not until the next upload.

TensorFlow-free: it runs beside Celery's consumer, never in a child process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from worker.chunks import MAX_UNIT_ATTEMPTS, ChunkRecords
from worker.contract import TASK_RUN_BATCH, TASK_RUN_CHUNK, TASK_RUN_JOB
from worker.dataset_ingest import remove_orphans
from worker.dataset_records import record_key
from worker.settings import Settings
from worker.store import BATCH_KEYS, DROP_INPUTS, KICK_SECONDS, NS, RUNNING, STATS_TTL, JobStore

log = logging.getLogger("convscope.worker")
MAX_ATTEMPTS = 3  # a job whose worker died this many times fails with worker_lost
SWEEP_SECONDS = 5.0
BATCH = 500  # running jobs looked at per sweep
FILES_SECONDS = 600.0  # how often a worker process removes expired datasets' folders

# KEYS: job hash, running set, lease, stats hash, event channel. ARGV: job id, most attempts,
# now (JSON). 0: its owner lives; 1: queued again; 2: failed (worker_lost, its images gone);
# -1: not running.
_REQUEUE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw or cjson.decode(raw) ~= 'running' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return -1
end
redis.call('ZREM', KEYS[2], ARGV[1])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local kind = cjson.decode(redis.call('HGET', KEYS[1], 'kind') or 'null')
if attempts >= tonumber(ARGV[2]) then
  local err = {code = 'worker_lost', message = 'the worker computing this job stopped ' ..
               attempts .. ' times (killed, out of memory, or lost); not tried again'}
  redis.call('HSET', KEYS[1], 'status', '"failed"', 'finished', ARGV[3],
             'error', cjson.encode(err))
  redis.call('HINCRBY', KEYS[4], tostring(kind) .. '|failed', 1)
  redis.call('EXPIRE', KEYS[4], STATS_TTL)
  redis.call('PUBLISH', KEYS[5], 'failed')
  DROP_INPUTS
  return 2
end
redis.call('HSET', KEYS[1], 'status', '"queued"', 'started', 'null', 'progress', '0.0')
redis.call('HINCRBY', KEYS[4], tostring(kind) .. '|requeued', 1)
redis.call('EXPIRE', KEYS[4], STATS_TTL)
redis.call('PUBLISH', KEYS[5], 'queued')
return 1
"""

Send = Callable[..., object]  # Celery's ``app.send_task(name, args=[...])``


class Sweeper:
    def __init__(self, store: JobStore, send: Send, max_attempts: int = MAX_ATTEMPTS,
                 settings: Settings | None = None) -> None:
        self.store, self.send, self.max_attempts = store, send, max_attempts
        self.settings = settings  # None: no dataset files to look after
        self._files_due = 0.0
        self._files: threading.Thread | None = None
        self._requeue = store.r.register_script(_REQUEUE.replace("STATS_TTL", str(STATS_TTL))
                                               .replace("DROP_INPUTS", DROP_INPUTS))
        self.chunks = ChunkRecords(store)

    def sweep(self) -> dict[str, int]:
        """One pass; returns what it did (``requeued``, ``lost``, ``kicked``)."""
        done = {"requeued": 0, "lost": 0, "kicked": 0}
        for raw in self.store.r.zrange(RUNNING, 0, BATCH - 1):
            job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            outcome = self.requeue(job_id)
            if outcome == 1:
                self.send(TASK_RUN_JOB, args=[job_id])
                done["requeued"] += 1
            elif outcome == 2:
                done["lost"] += 1
        for raw in self.store.r.smembers(BATCH_KEYS):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if self.kick_if_idle(key):
                done["kicked"] += 1
        self.sweep_chunks(done)
        return done

    def sweep_chunks(self, done: dict[str, int]) -> None:
        """Send again each dataset-job chunk (or merge) whose worker died; fail the job with
        ``worker_lost`` when one unit lost its worker :data:`MAX_UNIT_ATTEMPTS` times."""
        for job_id, unit, attempts in self.chunks.lapsed(BATCH):
            if attempts < MAX_UNIT_ATTEMPTS:
                self.send(TASK_RUN_CHUNK, args=[job_id, unit])
                done["requeued"] += 1
                continue
            message = (f"the worker computing chunk {unit} stopped {attempts} times (killed, "
                       "out of memory, or lost); not tried again")
            if self.store.transition(job_id, "failed", ("running",),
                                     error={"code": "worker_lost", "message": message}):
                job = self.store.get_job(job_id) or {}
                if job.get("chunks") is not None:  # its partials: never merged now
                    self.chunks.drop_once(job_id, int(job["chunks"]))
            done["lost"] += 1

    def requeue(self, job_id: str) -> int:
        s = self.store
        keys = [s.job_key(job_id), RUNNING, s.lease_key(job_id), f"{NS}:stats:jobs",
                s.events_channel(job_id)]
        return int(self._requeue(keys=keys, args=[job_id, self.max_attempts,
                                                  json.dumps(time.time())]))

    def kick_if_idle(self, key: str) -> bool:
        """Send the batch queue ``key`` a message if it holds jobs and none is pending."""
        r, queue = self.store.r, self.store.batch_queue(key)
        if not r.llen(queue):
            r.srem(BATCH_KEYS, key)  # a job queued meanwhile was sent its own message
            return False
        if not r.set(self.store.kick_key(key), b"1", nx=True, ex=KICK_SECONDS):
            return False
        self.send(TASK_RUN_BATCH, args=[key])
        return True

    def remove_expired_files(self, wait: bool = False) -> bool:
        """Remove expired datasets' folders, at most every :data:`FILES_SECONDS` in this
        process, on a thread of its own (removing a large dataset must not hold up the
        heartbeat this sweeper shares); True when it started (and, with ``wait``, ended)."""
        if self.settings is None or time.monotonic() < self._files_due or (
                self._files is not None and self._files.is_alive()):
            return False
        self._files_due = time.monotonic() + FILES_SECONDS
        self._files = threading.Thread(target=self._remove_files, args=(self.settings,),
                                       daemon=True, name="dataset-files")
        self._files.start()
        if wait:
            self._files.join()
        return True

    def _remove_files(self, settings: Settings) -> None:
        try:
            remove_orphans(settings, lambda d: bool(self.store.r.exists(record_key(d))))
        except Exception:  # Redis may blink: the next round looks again
            log.warning("removing expired datasets' folders failed", exc_info=True)

    def sweep_if_due(self) -> None:
        """Sweep unless another worker swept in the last :data:`SWEEP_SECONDS`; look after
        this host's dataset files when due."""
        self.remove_expired_files()
        if self.store.claim("sweep", max(1, int(SWEEP_SECONDS) - 1)):
            done = self.sweep()
            if any(done.values()):
                log.warning("sweeper: %s", done)
