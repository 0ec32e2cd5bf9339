"""``GET /v1/jobs/{id}/artifacts.tar``: every artifact of a job and its ``result.json`` in one
uncompressed tar, streamed one artifact at a time (one request instead of one per artifact).

Members: ``<artifact name>.png`` (``image/png``) or ``<artifact name>.npy``
(``application/x-npy``), sorted by name, then ``result.json`` (the job as ``GET /v1/jobs/{id}``
returns it). The headers are computed first, so the answer carries its ``Content-Length``.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from typing import Any

from apiflask import APIBlueprint
from flask import Response

from service.api.jobs import _own_job, public
from service.auth import require_tenant
from service.backend import backend
from service.errors import fail
from worker.contract import TERMINAL

bp = APIBlueprint("bundles", __name__, url_prefix="/v1/jobs", tag="jobs")
bp.before_request(require_tenant)

EXTENSIONS = {"image/png": ".png", "application/x-npy": ".npy", "text/csv": ".csv",
              "application/json": ".json"}
BLOCK = tarfile.BLOCKSIZE
RESULT = "result.json"
GROUP_BYTES = 4 << 20  # artifact bytes read from Redis in one round trip, at most
GROUP_KEYS = 128
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "An uncompressed tar: `<artifact>.png` / `<artifact>.npy` per "
          "artifact, then `result.json`",
          "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}},
    404: {"description": "No such job for this caller (problem+json `not_found`)"},
}


def member_name(name: str, content_type: str) -> str:
    """The tar member of artifact ``name``: its name plus the extension of its content type."""
    return name + EXTENSIONS.get(content_type, ".bin")


def _header(name: str, size: int, mtime: float) -> bytes:
    """The member's 512-byte header: a plain POSIX ustar block built directly for a short
    ASCII name (``tarfile``'s PAX header builder was 7 % of the API's CPU serving bundles of
    32-image jobs); anything else as ``tarfile`` writes it."""
    if len(name) > 99 or not name.isascii() or size >= 8**11:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(mtime), 0o644
        return info.tobuf(format=tarfile.PAX_FORMAT)
    head = bytearray(BLOCK)
    head[0:len(name)] = name.encode("ascii")
    head[100:108] = b"0000644\0"  # mode
    head[108:124] = b"0000000\0" * 2  # uid, gid
    head[124:136] = b"%011o\0" % size
    head[136:148] = b"%011o\0" % max(0, min(int(mtime), 8**11 - 1))
    head[148:156] = b" " * 8  # the checksum counts its own field as spaces
    head[156:157] = tarfile.REGTYPE
    head[257:265] = b"ustar\x0000"
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _groups(members: list[tuple[bytes, tuple[str, str, int]]]) -> Iterator[list]:
    """Consecutive members in groups read with one round trip each (one ``GET`` per artifact
    was a fifth of the API's CPU serving bundles): at most :data:`GROUP_BYTES` of artifacts
    (or one larger artifact) and :data:`GROUP_KEYS` keys per group."""
    group: list = []
    total = 0
    for member in members:
        size = member[1][2]
        if group and (total + size > GROUP_BYTES or len(group) >= GROUP_KEYS):
            yield group
            group, total = [], 0
        group.append(member)
        total += size
    if group:
        yield group


def _members(job_id: str, job: dict) -> list[tuple[str, str, int]]:
    """``(member name, artifact name, size)`` per artifact, sorted by name."""
    artifacts = sorted((job.get("artifacts") or {}).items())
    pipe = backend().store.r.pipeline()
    for name, _ in artifacts:
        pipe.strlen(backend().store.artifact_key(job_id, name))
    sizes = pipe.execute()
    missing = [name for (name, _), size in zip(artifacts, sizes, strict=True) if not size]
    if missing:  # artifacts are never empty: these expired
        fail(404, "not_found", f"job {job_id} artifacts {missing} are gone")
    return [(member_name(name, ctype), name, size)
            for (name, ctype), size in zip(artifacts, sizes, strict=True)]


@bp.get("/<job_id>/artifacts.tar")
@bp.doc(responses=RESPONSES)
def get_bundle(job_id: str) -> Response:
    """Every artifact of a job and its ``result.json`` as one uncompressed tar (streamed).

    A job that has not ended yet gives the artifacts stored so far; ``result.json`` shows its
    status. Artifact members are sorted by name and ``result.json`` comes last.
    """
    job = _own_job(job_id)
    result = json.dumps(public(job)).encode()  # compact: C's encoder, not the pure-Python one
    mtime = job.get("finished") or job.get("created") or 0
    members = _members(job_id, job)
    headers = [_header(member, size, mtime) for member, _, size in members]
    result_header = _header(RESULT, len(result), mtime)
    length = sum(len(h) + size + len(_padding(size))
                 for h, (_, _, size) in zip(headers, members, strict=True))
    length += len(result_header) + len(result) + len(_padding(len(result))) + 2 * BLOCK
    store = backend().store  # the generator runs after the request context is gone

    def stream() -> Iterator[bytes]:
        for group in _groups(list(zip(headers, members, strict=True))):
            found = store.get_artifacts(job_id, [name for _, (_, name, _) in group])
            for (header, (_, name, size)), data in zip(group, found, strict=True):
                if data is None or len(data) != size:  # expired meanwhile: cut it short
                    raise RuntimeError(f"artifact {name} of job {job_id} changed while "
                                       "streaming")
                yield header
                yield data
                yield _padding(size)
        yield result_header + result + _padding(len(result)) + b"\0" * (2 * BLOCK)

    cache = "private, max-age=86400" if job["status"] in TERMINAL else "no-store"
    return Response(stream(), mimetype="application/x-tar", headers={
        "Content-Length": str(length), "Cache-Control": cache,
        "Content-Disposition": f'attachment; filename="{job_id}.tar"'})

