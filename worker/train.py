"""``python -m worker.train MODEL``: train a built-in model into the data directory, with a
progress bar. Runs in its own process (it imports TensorFlow)."""

from __future__ import annotations

import sys
from pathlib import Path

from worker.settings import get_settings


def _bar(label: str):
    def report(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return report


def main(argv: list[str]) -> int:
    model_id = argv[0] if argv else "shapes"
    data_dir = Path(get_settings().data_dir)
    if model_id == "shapes":
        from models.shapes_model import load_or_train_shapes

        cached = (data_dir / "models" / "shapes-v1.keras").exists()
        if not cached:
            sys.stderr.write("training the shapes demo model (first run only)...\n")
        load_or_train_shapes(data_dir / "models", progress=_bar("shapes"))
        print(f"shapes model ready in {data_dir / 'models'}")
        return 0
    if model_id == "cifar10":
        from models.cifar_cnn import DatasetUnavailableError, train_cifar_cnn

        try:
            train_cifar_cnn(data_dir / "models", progress=_bar("cifar10"))
        except DatasetUnavailableError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
        print(f"cifar10 model ready in {data_dir / 'models'}")
        return 0
    sys.stderr.write(f"only 'shapes' and 'cifar10' can be trained, not {model_id!r}\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
