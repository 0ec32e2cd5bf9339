"""Load an uploaded ``.keras`` archive without running anyone's code, and without letting the
archive exhaust the worker's memory or disk.

Before any member is decompressed, the zip's directory is held to :class:`ArchiveLimits`: the
member count and the directory's size (from the end-of-directory record, before :mod:`zipfile`
parses the directory), then each member's and all members' uncompressed sizes as the
directory states them. Members are read through a bounded reader, so one whose header lies
about its size is refused as it inflates. ``config.json`` and ``metadata.json`` are capped in
bytes and in nesting depth before they are parsed.

``config.json`` is inspected before Keras sees it: every object must come from a ``keras``
module, and layers that carry code (``Lambda``) are refused. Keras then loads the model with
``safe_mode=True`` and no custom objects from the members it needs (config, metadata,
weights, assets), unpacked into a private folder beside the archive (for an upload: under the
data dir) and removed afterwards; given the zip itself, Keras would unpack every member into
the system's temporary directory. Legacy HDF5 (``.h5``) files are refused: their loader has no
safe mode.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import IO, Any

import keras
import numpy as np

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CODE_CARRYING = {"Lambda", "TFOpLambda", "SlicingOpLambda", "function", "__lambda__"}
CONFIG, METADATA = "config.json", "metadata.json"
WEIGHTS = ("model.weights.h5", "model.weights.npz")
ASSETS = "assets/"
CHUNK = 2**20  # bytes a member is read and copied by
DIRECTORY_BYTES_PER_MEMBER = 1024  # the zip directory may hold this much per allowed member
MAX_JSON_DEPTH = 500  # json and Keras parse recursively: deeper caps are refused at start
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record
_STRING = re.compile(r'"[^"]*"')  # a JSON string, once its escaped quotes are gone
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class UnsafeModelError(ValueError):
    """The model needs code to load (Lambda layers, custom classes, legacy formats)."""


class InvalidModelError(ValueError):
    """The file is not a usable Keras model."""


class ArchiveLimitError(InvalidModelError):
    """The archive would unpack to more than :class:`ArchiveLimits` allows."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What a ``.keras`` archive may unpack to (defaults: ``worker.settings``' defaults)."""

    max_members: int = 10_000
    max_member_bytes: int = 256 * 2**20  # any one member, uncompressed
    max_total_bytes: int = 512 * 2**20  # all members together, uncompressed
    max_json_bytes: int = 16 * 2**20  # config.json, metadata.json: parsed in memory
    max_json_depth: int = 200  # nesting of arrays and objects in those files

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"ArchiveLimits.{f.name}={getattr(self, f.name)}: must be >= 1")
        if self.max_json_depth > MAX_JSON_DEPTH:
            raise ValueError(f"ArchiveLimits.max_json_depth={self.max_json_depth}: at most "
                             f"{MAX_JSON_DEPTH} (the parsers recurse per level)")


def _configs(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _configs(value)


def _is_keras_module(module: str) -> bool:
    return module == "keras" or module.startswith("keras.")


def check_config(config: dict) -> None:
    """Raise UnsafeModelError if any object in a Keras config is not plain Keras."""
    for obj in _configs(config):
        name = obj.get("class_name")
        if name in CODE_CARRYING:
            raise UnsafeModelError(f"the model contains a {name!r} object, which carries code")
        module = obj.get("module")
        if name is not None and isinstance(module, str) and not _is_keras_module(module):
            raise UnsafeModelError(f"the model needs custom code: {module}.{name}")
        if obj.get("registered_name") and "class_name" in obj and module is None:
            if "." in str(obj["registered_name"]) or ">" in str(obj["registered_name"]):
                raise UnsafeModelError(f"the model needs custom code: {obj['registered_name']}")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text``, found without parsing it
    (exact for valid JSON; for invalid JSON, at least the depth a parser reaches)."""
    plain = text.replace("\\\\", "").replace('\\"', "")  # escapes gone, quotes pair up
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", plain)).encode("ascii")
    depth = deepest = 0
    for start in range(0, len(brackets), CHUNK):  # in chunks: bounded memory
        codes = np.frombuffer(brackets[start:start + CHUNK], np.uint8)
        opens = (codes == ord("[")) | (codes == ord("{"))
        running = depth + np.cumsum(np.where(opens, 1, -1))
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
    return deepest


def _directory_claims(fh: IO[bytes], size: int) -> tuple[int, int]:
    """``(members, directory bytes)`` as the archive's end records state them (the largest
    claims, where a zip64 record is present too), found as :mod:`zipfile` finds them."""
    tail_size = min(size, _EOCD.size + 0xFFFF)
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = len(tail) - _EOCD.size
    if tail[at:at + 4] != b"PK\x05\x06" or tail[-2:] != b"\0\0":
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise InvalidModelError("not a valid .keras archive: it has no zip directory")
    claims = [_EOCD.unpack_from(tail, at)[4:6]]
    locator_at = size - tail_size + at - _EOCD64_LOCATOR.size
    if locator_at >= 0:
        fh.seek(locator_at)
        sig, _, offset, _ = _EOCD64_LOCATOR.unpack(fh.read(_EOCD64_LOCATOR.size))
        for record_at in {locator_at - _EOCD64.size, offset} if sig == b"PK\x06\x07" else ():
            fh.seek(max(record_at, 0))
            record = fh.read(_EOCD64.size)
            if record_at >= 0 and len(record) == _EOCD64.size and record[:4] == b"PK\x06\x06":
                claims.append(_EOCD64.unpack(record)[7:9])
    return max(c[0] for c in claims), max(c[1] for c in claims)


def _check_members(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    """Member count, names, and uncompressed sizes as the zip directory states them."""
    if len(infos) > limits.max_members:
        raise ArchiveLimitError(f"the archive holds {len(infos)} members; the limit is "
                                f"{limits.max_members}")
    total, seen = 0, set()
    for info in infos:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts:
            raise UnsafeModelError(f"the archive member {info.filename!r} points outside it")
        if info.filename in seen:
            raise InvalidModelError(f"the archive holds {info.filename!r} twice")
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise InvalidModelError(f"the archive member {info.filename!r} is encrypted")
        if info.file_size > limits.max_member_bytes:
            raise ArchiveLimitError(f"the archive member {info.filename!r} unpacks to "
                                    f"{info.file_size} bytes; the limit is "
                                    f"{limits.max_member_bytes}")
        total += info.file_size
    if total > limits.max_total_bytes:
        raise ArchiveLimitError(f"the archive unpacks to {total} bytes; the limit is "
                                f"{limits.max_total_bytes}")


@contextmanager
def open_archive(path: str | os.PathLike, limits: ArchiveLimits) -> Iterator[zipfile.ZipFile]:
    """The ``.keras`` zip at ``path``, its directory checked against ``limits``; nothing of
    it is decompressed here."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if head.startswith(HDF5_MAGIC):
            raise UnsafeModelError("legacy HDF5 (.h5) models are refused: save it as .keras")
        if not head.startswith(b"PK"):
            raise InvalidModelError("not a .keras archive (expected a zip file)")
        members, directory = _directory_claims(fh, os.fstat(fh.fileno()).st_size)
        if members > limits.max_members:
            raise ArchiveLimitError(f"the archive holds {members} members; the limit is "
                                    f"{limits.max_members}")
        if directory > limits.max_members * DIRECTORY_BYTES_PER_MEMBER:
            raise ArchiveLimitError(f"the archive's zip directory is {directory} bytes; the "
                                    f"limit is {limits.max_members * DIRECTORY_BYTES_PER_MEMBER}")
        try:
            archive = zipfile.ZipFile(fh)
        except Exception as exc:  # whatever zipfile makes of it, the file is at fault
            raise InvalidModelError(f"not a valid .keras archive: {exc}") from exc
        with archive:
            _check_members(archive.infolist(), limits)
            yield archive


def _stream(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Iterator[bytes]:
    """A member's bytes, a chunk at a time; InvalidModelError as soon as it inflates past
    the size its header states or past ``limit``, or when it fails its checksum or ends short
    of that size."""
    allowed, seen = min(info.file_size, limit), 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                seen += len(chunk)
                if seen > allowed:
                    raise InvalidModelError(f"the archive member {info.filename!r} unpacks to "
                                            f"more than the {allowed} bytes allowed for it")
                yield chunk
        if seen != info.file_size:
            raise InvalidModelError(f"the archive member {info.filename!r} unpacks to {seen} "
                                    f"bytes, not the {info.file_size} its header states")
    except InvalidModelError:
        raise
    except Exception as exc:  # a damaged member is the file's fault, whatever zipfile says
        raise InvalidModelError(f"the archive member {info.filename!r} is damaged: "
                                f"{str(exc)[:200]}") from exc


def _read_json(archive: zipfile.ZipFile, name: str, limits: ArchiveLimits) -> tuple[Any, bytes]:
    """A JSON member, parsed, and its bytes: size and nesting checked before parsing."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise InvalidModelError(f"not a valid .keras archive: there is no {name}") from None
    if info.file_size > limits.max_json_bytes:
        raise ArchiveLimitError(f"{name} unpacks to {info.file_size} bytes; the limit is "
                                f"{limits.max_json_bytes}")
    raw = b"".join(_stream(archive, info, limits.max_json_bytes))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidModelError(f"{name} is not UTF-8 text: {exc}") from exc
    depth = json_depth(text)
    if depth > limits.max_json_depth:
        raise ArchiveLimitError(f"{name} nests arrays and objects {depth} levels deep; the "
                                f"limit is {limits.max_json_depth}")
    try:
        return json.loads(text), raw
    except json.JSONDecodeError as exc:
        raise InvalidModelError(f"{name} is not valid JSON: {exc}") from exc
    except RecursionError:  # cannot happen below MAX_JSON_DEPTH; refused all the same
        raise ArchiveLimitError(f"{name} is nested too deeply to read") from None


def read_archive_config(path: str | os.PathLike, limits: ArchiveLimits | None = None) -> dict:
    """The ``config.json`` of a ``.keras`` archive (magic bytes and limits checked first)."""
    limits = limits or ArchiveLimits()
    with open_archive(path, limits) as archive:
        config, _ = _read_json(archive, CONFIG, limits)
    if not isinstance(config, dict):
        raise InvalidModelError(f"{CONFIG} does not hold a Keras object")
    return config


@contextmanager
def unpacked(archive: zipfile.ZipFile, files: dict[str, bytes], beside: Path,
             limits: ArchiveLimits) -> Iterator[Path]:
    """A private folder in ``beside`` holding ``files`` and the archive's weights and assets
    (nothing else), copied through the bounded reader; removed on leaving."""
    folder = Path(tempfile.mkdtemp(prefix=".unpack-", dir=beside))
    try:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        for info in archive.infolist():
            if info.filename not in WEIGHTS and not info.filename.startswith(ASSETS):
                continue  # anything else stays packed: Keras does not need it
            target = folder.joinpath(*PurePosixPath(info.filename).parts)  # names checked
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for chunk in _stream(archive, info, limits.max_member_bytes):
                    out.write(chunk)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_image_model(model: keras.Model) -> tuple[int | None, int | None, int]:
    """The ``(H, W, C)`` input of a single-input image model, else InvalidModelError."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise InvalidModelError("convscope needs one image input of shape (H, W, C)")
    h, w, c = model.inputs[0].shape[1:]
    if c not in (1, 3):
        raise InvalidModelError(f"the input has {c} channels; expected 1 (grey) or 3 (RGB)")
    return h, w, c


def _keras_load(folder: Path) -> keras.Model:
    """Keras's loader on an unpacked model folder, its failures as our two errors."""
    try:
        return keras.saving.load_model(str(folder), compile=False, safe_mode=True)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        if "safe_mode" in text or "Could not locate" in text or "custom" in text.lower():
            raise UnsafeModelError(f"the model needs code to load: {text[:300]}") from exc
        raise InvalidModelError(f"Keras could not load the model: {text[:300]}") from exc
    except Exception as exc:  # any loader failure is the file's fault
        raise InvalidModelError(f"Keras could not load the model: {str(exc)[:300]}") from exc


def load_keras_file(path: str | os.PathLike, max_bytes: int = 200 * 2**20,
                    limits: ArchiveLimits | None = None) -> keras.Model:
    """Load ``path`` safely or raise UnsafeModelError / InvalidModelError with the reason
    (ArchiveLimitError, an InvalidModelError, past ``limits``). Nothing is written outside
    the archive's folder, and nothing is left there."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise InvalidModelError(f"the file is {size} bytes; the limit is {max_bytes}")
    limits = limits or ArchiveLimits()
    with open_archive(path, limits) as archive:
        config, config_bytes = _read_json(archive, CONFIG, limits)
        if not isinstance(config, dict):
            raise InvalidModelError(f"{CONFIG} does not hold a Keras object")
        check_config(config)
        metadata = b"{}"  # Keras's folder loader reads assets only beside all three files
        if METADATA in archive.namelist():
            _, metadata = _read_json(archive, METADATA, limits)
        files = {CONFIG: config_bytes, METADATA: metadata}
        with unpacked(archive, files, Path(path).resolve().parent, limits) as folder:
            model = _keras_load(folder)
    if not isinstance(model, keras.Model):
        raise InvalidModelError("the archive holds a layer, not a model")
    check_image_model(model)
    return model
