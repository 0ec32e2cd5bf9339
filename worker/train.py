"""``python -m worker.train MODEL``: train a built-in model into the data directory, with a
progress bar. Runs in its own process (it imports TensorFlow)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click

from worker.settings import get_settings
from worker.tensorflow_startup import start_tensorflow


@contextmanager
def _bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing a click progress bar on stderr."""
    bars: list = []
    with ExitStack() as stack:
        def report(done: int, total: int) -> None:
            if not bars:
                bars.append(stack.enter_context(
                    click.progressbar(length=total, label=label, file=sys.stderr)))
            bars[0].update(done - bars[0].pos)
        yield report


def main(argv: list[str]) -> int:
    model_id = argv[0] if argv else "shapes"
    start_tensorflow()
    data_dir = Path(get_settings().data_dir)
    if model_id == "shapes":
        from models.shapes_model import load_or_train_shapes

        cached = (data_dir / "models" / "shapes-v1.keras").exists()
        if not cached:
            sys.stderr.write("training the shapes demo model (first run only)...\n")
        with _bar("shapes") as progress:
            load_or_train_shapes(data_dir / "models", progress=progress)
        print(f"shapes model ready in {data_dir / 'models'}")
        return 0
    if model_id == "cifar10":
        from models.cifar_cnn import DatasetUnavailableError, train_cifar_cnn

        try:
            with _bar("cifar10") as progress:
                train_cifar_cnn(data_dir / "models", progress=progress)
        except DatasetUnavailableError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
        print(f"cifar10 model ready in {data_dir / 'models'}")
        return 0
    sys.stderr.write(f"only 'shapes' and 'cifar10' can be trained, not {model_id!r}\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
