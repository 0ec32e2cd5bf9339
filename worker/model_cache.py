"""Models loaded once per worker process and kept in a small LRU, with their tools.

A tool (a CAM object, an activation extractor, a filter visualiser) holds compiled
``tf.function``s; caching it per (model, kind, layer) makes the second job fast.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.zoo import (
    BUILTIN,
    LoadedModel,
    UnknownModelError,
    load_builtin,
    load_uploaded,
    model_files,
)
from worker.settings import Settings
from worker.uploads import archive_limits, upload_path


class ModelCache:
    def __init__(self, settings: Settings, describe: Callable[[str], dict | None]) -> None:
        self.settings = settings
        self._describe = describe  # model id -> stored record (for uploads: file, preprocess)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._stamps: dict[str, tuple] = {}  # built-in id -> its files' mtimes when loaded
        self._tools: dict[tuple, Any] = {}
        self._lock = threading.RLock()

    def upload_path(self, model_id: str) -> Path:
        return upload_path(self.settings.data_dir, model_id)

    def _load(self, model_id: str) -> LoadedModel:
        if model_id in BUILTIN:
            return load_builtin(model_id, self.settings.data_dir, self.settings.allow_download)
        record = self._describe(model_id)
        if record is None or not self.upload_path(model_id).exists():
            raise UnknownModelError(f"unknown model {model_id!r}")
        return load_uploaded(self.upload_path(model_id), model_id, record.get("name", model_id),
                             record.get("preprocess", "raw"), record.get("classes"),
                             self.settings.max_model_bytes, archive_limits(self.settings))

    def _stamp(self, model_id: str) -> tuple:
        """The files a built-in model is loaded from, with their mtimes (weights given or
        trained since the model was loaded make it load again)."""
        paths = model_files(self.settings.data_dir, model_id)
        return tuple((str(p), p.stat().st_mtime_ns) for p in paths if p.exists())

    def _fresh(self, model_id: str) -> bool:
        if model_id in BUILTIN:
            return self._stamps.get(model_id) == self._stamp(model_id)
        return self._describe(model_id) is not None  # a deleted upload is gone

    def get(self, model_id: str) -> LoadedModel:
        """The loaded model, loaded again when its files changed; a deleted upload is
        forgotten (and unknown from then on)."""
        with self._lock:
            if model_id in self._models and self._fresh(model_id):
                self._models.move_to_end(model_id)
                return self._models[model_id]
            self.forget(model_id)
            if model_id in BUILTIN:
                self._stamps[model_id] = self._stamp(model_id)
            loaded = self._load(model_id)
            self._models[model_id] = loaded
            while len(self._models) > max(1, self.settings.model_cache_size):
                evicted, _ = self._models.popitem(last=False)
                self._tools = {k: v for k, v in self._tools.items() if k[0] != evicted}
            return loaded

    def tool(self, model_id: str, key: tuple, build: Callable[[LoadedModel], Any]) -> Any:
        """The cached tool ``key`` for ``model_id``, built on first use."""
        with self._lock:
            loaded = self.get(model_id)
            full = (model_id, *key)
            if full not in self._tools:
                self._tools[full] = build(loaded)
            return self._tools[full]

    def forget(self, model_id: str) -> None:
        with self._lock:
            self._models.pop(model_id, None)
            self._tools = {k: v for k, v in self._tools.items() if k[0] != model_id}
