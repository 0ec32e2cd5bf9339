"""Make a dataset from an uploaded archive or a registered server folder (the worker's
``convscope.ingest_dataset`` task): every image decoded once with Pillow, an archive's images
written under ``<data_dir>/datasets/<id>/files/`` (nowhere else), ``labels.csv`` and
``boxes.json`` read, ``manifest.json`` written, the record set ``ready`` or ``failed``.

Files that are not images, corrupt images, hidden and system files (``.*``, ``__MACOSX``) are
listed as skipped with their reason. When every entry of an archive sits in one top folder
(an archive of a folder), that folder is the dataset's root: the manifest's paths and the
paths in ``labels.csv`` / ``boxes.json`` are relative to it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from worker.contract import DATASET_BOXES, DATASET_LABELS
from worker.dataset_archive import (
    DatasetLimits,
    InvalidArchiveError,
    Member,
    archive_members,
    folder_members,
)
from worker.dataset_labels import MAX_WARNINGS, parse_boxes, parse_labels
from worker.dataset_records import DatasetRecords
from worker.datasets import (
    dataset_dir,
    datasets_dir,
    decode,
    inside,
    is_folder,
    resolved,
    upload_file,
    write_manifest,
)
from worker.settings import Settings, get_settings

log = logging.getLogger("convscope.worker")
MAX_LISTED = 1000  # skipped files listed in the record (the manifest lists them all)
ORPHAN_SECONDS = 3600  # a dataset folder without a record this old is removed


class EmptyDatasetError(InvalidArchiveError):
    code = "empty_dataset"


def limits_of(settings: Settings) -> DatasetLimits:
    return DatasetLimits(settings.max_dataset_files, settings.max_dataset_file_bytes,
                         settings.max_dataset_bytes)


def _hidden(name: str) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(name).parts)


@dataclass
class _Found:
    images: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (H, W)
    skipped: list[dict] = field(default_factory=list)
    manifests: set[str] = field(default_factory=set)  # labels.csv / boxes.json kept
    names: list[str] = field(default_factory=list)  # every visible entry, for the root
    bytes: int = 0


def _collect(members: Iterable[Member | tuple[str, str]], copy_to: Path | None,
             max_pixels: int) -> _Found:
    """Read every entry once: images checked (and copied under ``copy_to``, for archives)."""
    found, paths = _Found(), _Paths()
    for member in members:
        if isinstance(member, tuple):
            found.skipped.append({"file": _readable(member[0]), "reason": member[1]})
            continue
        name = member.name if copy_to is None else _readable(member.name)
        reason = _unusable(name, member.name, paths, copy_to is None)
        if reason:
            found.skipped.append({"file": _readable(name), "reason": reason})
            continue
        found.names.append(name)
        is_manifest = PurePosixPath(name).name in (DATASET_LABELS, DATASET_BOXES)
        data = member.read()
        if not is_manifest:
            try:
                found.images[name] = decode(data, max_pixels).size[::-1]
            except ValueError as exc:
                found.skipped.append({"file": name, "reason": str(exc)})
                continue
            found.bytes += len(data)
        paths.take(name)  # kept: a later entry may no longer take its path
        if copy_to is not None:
            _write(copy_to, name, data)
        if is_manifest:
            found.manifests.add(name)
    return found


NAME_BYTES = 255  # a file or folder name, in bytes: what Linux file systems hold
PATH_BYTES = 3072  # a whole path inside the dataset (Linux takes 4096 with the data dir's)


@dataclass
class _Paths:
    """The paths an archive's entries take: files, and the folders above them."""

    files: set[str] = field(default_factory=set)
    folders: set[str] = field(default_factory=set)

    def taken(self, name: str) -> bool:
        above = _above(name)
        return name in self.files or name in self.folders or any(a in self.files
                                                                  for a in above)

    def take(self, name: str) -> None:
        self.files.add(name)
        self.folders.update(_above(name))


def _above(name: str) -> list[str]:
    parts = PurePosixPath(name).parts
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _readable(name: str) -> str:
    """``name`` with each byte that is not UTF-8 (a tar's or a folder's names, decoded with
    ``surrogateescape``) as ``%XX``: JSON and HTTP headers carry it, and two names that differ
    in such bytes stay apart."""
    return "".join(f"%{ord(c) - 0xDC00:02X}" if 0xDC80 <= ord(c) <= 0xDCFF else c
                   for c in name)


def _unusable(name: str, raw: str, paths: _Paths, in_folder: bool) -> str | None:
    """Why the entry ``name`` cannot be one of the dataset's files, or None: hidden; a name
    that is not UTF-8 in a server folder (an archive's is renamed); a name with control
    characters; a part too long for a file system; a path
    an entry kept before took, as a file or as a folder (an archive may hold a name twice,
    or ``a`` beside ``a/b.png``)."""
    if _hidden(name):
        return "hidden or system file"
    if in_folder and _readable(raw) != raw:
        return "file name is not valid UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "file name has control characters"
    if any(len(p.encode()) > NAME_BYTES for p in PurePosixPath(name).parts):
        return f"a name in its path is longer than {NAME_BYTES} bytes"
    if len(name.encode()) > PATH_BYTES:
        return f"its path is longer than {PATH_BYTES} bytes"
    if paths.taken(name):
        return "another entry of the archive has the same path"
    return None


def _write(base: Path, name: str, data: bytes) -> None:
    """``data`` as ``base/name``: a new file, never through a link, never outside ``base``."""
    target = base.joinpath(*PurePosixPath(name).parts)
    if not target.resolve().is_relative_to(base.resolve()):
        raise InvalidArchiveError(f"{name!r} would be written outside the dataset")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as out:  # "x": an entry named twice is not written over
        out.write(data)


def _top_folder(names: list[str]) -> str:
    """The one folder every entry sits in, or ""."""
    tops = {PurePosixPath(n).parts[0] for n in names}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names):
        return tops.pop()
    return ""


def _manifest(found: _Found, root: Path, prefix: str) -> dict:
    """The manifest's content, paths relative to ``prefix``; labels and boxes read from
    ``root/prefix``."""
    cut = len(prefix) + 1 if prefix else 0
    sizes = {name[cut:]: size for name, size in sorted(found.images.items())}
    warn: list[str] = []
    labels_at, boxes_at = (f"{prefix}/{m}" if prefix else m for m in (DATASET_LABELS,
                                                                      DATASET_BOXES))
    has_labels, has_boxes = labels_at in found.manifests, boxes_at in found.manifests
    labels = parse_labels((root / labels_at).read_bytes(), sizes, warn) if has_labels else {}
    boxes = parse_boxes((root / boxes_at).read_bytes(), sizes, warn) if has_boxes else {}
    images = [{"file": f, "size": list(s), "label": labels.get(f), "boxes": boxes.get(f, [])}
              for f, s in sizes.items()]
    stray = sorted(found.manifests - {labels_at, boxes_at})
    skipped = found.skipped + [{"file": n, "reason": "not at the dataset's root: not read"}
                               for n in stray]
    if len(warn) > MAX_WARNINGS:
        warn = warn[:MAX_WARNINGS] + [f"... and {len(warn) - MAX_WARNINGS} more"]
    return {"images": images, "skipped": skipped, "warnings": warn,
            "classes": sorted({i["label"] for i in images if i["label"] is not None}),
            # a file with no usable row or box (its warnings say why): no ground truth
            "has_labels": bool(labels), "has_boxes": any(boxes.values())}


def ingest(settings: Settings, record: dict) -> dict:
    """Read the dataset ``record`` names; returns what its record gains (status ``ready``).
    InvalidArchiveError (or a subclass) when it is refused."""
    folder = dataset_dir(settings.data_dir, record["id"])
    files = folder / "files"
    shutil.rmtree(files, ignore_errors=True)  # a re-run starts over
    folder.mkdir(parents=True, exist_ok=True)
    if record["source"] == "folder":
        root = resolved(record["path"])
        if root is None or not inside(root, settings.dataset_roots) or not is_folder(root):
            raise InvalidArchiveError(f"{record['path']} is not a folder datasets may use")
        members = folder_members(root, limits_of(settings),
                                 lambda real: not inside(real, settings.dataset_roots))
        found, base, prefix = _collect(members, None, settings.max_image_pixels), root, ""
    else:
        members = archive_members(upload_file(settings.data_dir, record["id"]),
                                  limits_of(settings))
        files.mkdir(parents=True)
        found = _collect(members, files, settings.max_image_pixels)
        base, prefix = files, _top_folder(found.names)
    if not found.images:
        raise EmptyDatasetError("no images found (PNG, JPEG, GIF, BMP, WebP, TIFF or PPM)")
    content = _manifest(found, base, prefix)
    root_text = str(base / prefix) if record["source"] == "folder" else \
        str(PurePosixPath("files", prefix))
    write_manifest(folder, {"id": record["id"], "root": root_text, **content})
    return {"status": "ready", "images": len(content["images"]), "bytes": found.bytes,
            "skipped": content["skipped"][:MAX_LISTED], "skipped_count": len(content["skipped"]),
            "has_labels": content["has_labels"], "has_boxes": content["has_boxes"],
            "classes": content["classes"], "warnings": content["warnings"], "error": None}


def remove_orphans(settings: Settings, has_record: Callable[[str], bool]) -> None:
    """Remove dataset folders whose record has expired (or never was) and that are old."""
    cutoff = time.time() - ORPHAN_SECONDS
    for folder in datasets_dir(settings.data_dir).glob("d*"):
        try:
            if folder.stat().st_mtime < cutoff and not has_record(folder.name):
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


@lru_cache(maxsize=1)
def _records(url: str, ttl: int) -> DatasetRecords:
    from worker.redis_client import connect

    return DatasetRecords(connect(url), ttl)


def run_ingest(dataset_id: str, settings: Settings | None = None) -> None:
    """The task's body: safe to re-run (a dataset no longer ``processing`` is left alone; a
    dataset deleted meanwhile has its files removed, not its record recreated)."""
    settings = settings or get_settings()
    records = _records(settings.broker_url, settings.dataset_ttl)
    record = records.get(dataset_id)
    if record is None or record.get("status") != "processing":
        return
    ttl = None
    try:
        record.update(ingest(settings, record))
    except InvalidArchiveError as exc:
        record.update(status="failed", error={"code": exc.code, "message": str(exc)[:500]})
        ttl = settings.refused_model_ttl
    except Exception as exc:  # a bug here must not look like the user's archive
        log.exception("dataset %s: ingest failed", dataset_id)
        record.update(status="failed", error={"code": "internal_error",
                                              "message": type(exc).__name__})
        ttl = settings.refused_model_ttl
    folder = dataset_dir(settings.data_dir, dataset_id)
    upload_file(settings.data_dir, dataset_id).unlink(missing_ok=True)
    if record["status"] == "failed":  # a refused dataset keeps no files, only its record
        shutil.rmtree(folder, ignore_errors=True)
    if not records.put(record, ttl=ttl, replace_only=True):  # deleted meanwhile
        shutil.rmtree(folder, ignore_errors=True)
    remove_orphans(settings, lambda d: records.get(d) is not None)
