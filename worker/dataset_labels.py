"""A dataset's optional ground truth: ``labels.csv`` (``file,class`` rows, a header row
allowed) and ``boxes.json`` (``{file: [[class, x0, y0, x1, y1], ...]}``, pixels of the
stored image, ``x1``/``y1`` exclusive). A bad row or box is dropped with a warning, never
fatal; classes are kept as text."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import PurePosixPath

MAX_WARNINGS = 100

Sizes = dict[str, tuple[int, int]]  # file -> (H, W) of the dataset's images
Box = list  # [class, x0, y0, x1, y1]


def _key(name: str) -> str:
    return PurePosixPath(name.strip().replace("\\", "/")).as_posix().removeprefix("./")


def parse_labels(data: bytes, sizes: Sizes, warn: list[str]) -> dict[str, str]:
    """``labels.csv`` as ``{file: class}`` for the files the dataset holds."""
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        warn.append(f"labels.csv is not readable CSV text: {exc}")
        return {}
    if rows and [c.strip().lower() for c in rows[0]] == ["file", "class"]:
        rows = rows[1:]
    labels: dict[str, str] = {}
    for line, row in enumerate(rows, start=1):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2 or not row[1].strip():
            warn.append(f"labels.csv row {line}: expected 'file,class', got {row!r}")
        elif any(ord(c) < 32 or ord(c) == 127 for c in row[1].strip()):
            warn.append(f"labels.csv row {line}: the class {row[1][:80]!r} holds a line break "
                        "or another control character (a quote left open?); row dropped")
        elif _key(row[0]) not in sizes:
            warn.append(f"labels.csv row {line}: no image {row[0]!r} in the dataset")
        elif labels.setdefault(_key(row[0]), row[1].strip()) != row[1].strip():
            warn.append(f"labels.csv row {line}: {row[0]!r} already has the class "
                        f"{labels[_key(row[0])]!r}; the first row is kept")
    return labels


def _check_box(box: object, size: tuple[int, int]) -> Box:
    """A valid ``[class, x0, y0, x1, y1]`` inside an image of ``size`` (H, W), or ValueError."""
    if not isinstance(box, list) or len(box) != 5:
        raise ValueError("expected [class, x0, y0, x1, y1]")
    label, *coords = box
    if not isinstance(label, (str, int)) or isinstance(label, bool):
        raise ValueError("the class must be a string or an integer")
    if not all(isinstance(c, int) and not isinstance(c, bool)  # any size: no overflow
               or isinstance(c, float) and math.isfinite(c) for c in coords):
        raise ValueError("coordinates must be numbers")
    x0, y0, x1, y1 = coords
    height, width = size
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"not inside the {width}×{height} image with x0 < x1, y0 < y1")
    return [str(label), *coords]


def parse_boxes(data: bytes, sizes: Sizes, warn: list[str]) -> dict[str, list[Box]]:
    """``boxes.json`` as ``{file: [[class, x0, y0, x1, y1], ...]}`` for the dataset's files."""
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        warn.append(f"boxes.json is not valid JSON: {str(exc)[:200]}")
        return {}
    if not isinstance(raw, dict):
        warn.append("boxes.json must hold an object {file: [[class, x0, y0, x1, y1], ...]}")
        return {}
    boxes: dict[str, list[Box]] = {}
    for name, items in raw.items():
        if _key(name) not in sizes:
            warn.append(f"boxes.json: no image {name!r} in the dataset")
            continue
        if not isinstance(items, list):
            warn.append(f"boxes.json {name!r}: expected a list of boxes")
            continue
        kept = boxes.setdefault(_key(name), [])
        for i, box in enumerate(items):
            try:
                kept.append(_check_box(box, sizes[_key(name)]))
            except ValueError as exc:
                warn.append(f"boxes.json {name!r} box {i}: {exc}")
    return boxes
