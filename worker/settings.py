"""One typed settings object, read once from ``CONVSCOPE_*`` environment variables.

Shared by the API and the worker; imports nothing heavy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from worker.contract import MAX_FILTER_STEPS

PREFIX = "CONVSCOPE_"


def _parse(kind: type, raw: str) -> object:
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind is Path:
        return Path(raw).expanduser()
    return raw


@dataclass(frozen=True)
class Settings:
    """Every field ``foo`` is read from ``CONVSCOPE_FOO``."""

    redis_url: str = ""  # empty: `convscope up` starts an embedded Redis
    data_dir: Path = field(default_factory=lambda: Path.cwd() / "data")
    result_ttl: int = 24 * 3600  # seconds every job, artifact and index entry lives
    model_ttl: int = 30 * 24 * 3600  # seconds model metadata lives (re-described on demand)
    refused_model_ttl: int = 3600  # seconds a refused upload stays listed (with ?all=true)
    api_keys: tuple = ()  # comma-separated; each key is its own tenant
    max_content_length: int = 64 * 2**20  # bytes in one request body (413 beyond)
    max_model_bytes: int = 200 * 2**20
    max_image_pixels: int = 16_777_216  # per decoded image (Pillow bombs beyond)
    max_images_per_job: int = 32
    max_display_pixels: int = 1_048_576  # originals kept for overlays are scaled down to this
    soft_time_limit: int = 600  # seconds; the task is told to stop
    time_limit: int = 660  # seconds; the worker process is killed
    max_wait: float = 60.0  # longest ?wait= the API honours
    allow_download: bool = False  # let keras.applications download ImageNet weights
    model_cache_size: int = 3  # models kept loaded per worker process
    batch_max_jobs: int = 32  # queued jobs a worker computes with one model call at most
    batch_max_images: int = 64  # ... and images in all (a new batch size may trace once)
    batch_max_pixels: int = 262_144  # ... and input pixels (64 images of 64², 5 of 224²):
    # merging helps small images; large ones already fill the engine's micro-batches
    batch_delay_ms: float = 0.0  # wait this long for more jobs when a batch is not full
    task_events: bool = False  # Celery task events (monitoring); Flower enables them itself
    max_filter_steps: int = 512
    rate_limit: str = "600/minute"  # new jobs + uploads per tenant; "off" for no limit
    describe_on_start: tuple = ("shapes", "cifar10")  # models a worker describes at start
    # What an uploaded .keras archive may unpack to, checked from its zip directory before
    # anything is read (models.safe_load.ArchiveLimits; keep the sizes above max_model_bytes).
    max_model_members: int = 10_000
    max_model_member_bytes: int = 256 * 2**20  # any one member, uncompressed
    max_model_unpacked_bytes: int = 512 * 2**20  # all members together, uncompressed
    max_model_json_bytes: int = 16 * 2**20  # config.json / metadata.json (parsed in memory)
    max_model_json_depth: int = 200  # nesting of arrays and objects in those files
    # Datasets (POST /v1/datasets): what an archive (or a registered folder) may hold, checked
    # before and while it is read; past a limit it is refused with archive_too_large.
    dataset_ttl: int = 7 * 24 * 3600  # seconds a dataset (record and files) lives
    dataset_roots: tuple = ()  # server folders datasets may be registered from (none: off)
    max_dataset_files: int = 50_000  # entries of any kind (images, other files, folders)
    max_dataset_file_bytes: int = 32 * 2**20  # any one file, uncompressed
    max_dataset_bytes: int = 2 * 2**30  # all files together, uncompressed
    # Dataset jobs: images per chunk (a task of its own), also the most a job may ask for.
    # A chunk holds its images as float32 at the model's input size plus the layer's output
    # (128 images of 64×64×3: 6 MB + activations); its stored partial result is about
    # channels × (28·k + 8·61) bytes before compression (64 channels, k=9: 47 KB).
    dataset_chunk_images: int = 128
    # TensorFlow threads per worker child (intra- and inter-op pools); 0: TensorFlow's own
    # choice (every core). Worker processes sharing a host each spin a pool as large as the
    # host, so `convscope up --workers N` gives each cores / N (at least 1); set it yourself
    # for workers started otherwise (compose --scale, several `celery worker` commands).
    tf_threads: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.max_filter_steps <= MAX_FILTER_STEPS:
            raise ValueError(f"{PREFIX}MAX_FILTER_STEPS={self.max_filter_steps}: must be in "
                             f"1..{MAX_FILTER_STEPS}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is not None:
                kind = {"str": str, "int": int, "float": float, "bool": bool,
                        "tuple": tuple, "Path": Path}[str(f.type)]
                try:
                    values[f.name] = _parse(kind, raw)
                except ValueError as exc:
                    raise ValueError(f"{PREFIX}{f.name.upper()}={raw!r}: {exc}") from exc
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def broker_url(self) -> str:
        return self.redis_url or "redis://127.0.0.1:6379/0"

    @property
    def open_access(self) -> bool:
        return not self.api_keys


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings.from_env()
