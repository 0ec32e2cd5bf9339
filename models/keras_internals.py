"""Every place convscope relies on Keras internals, behind small named functions.

The rest of ``models/`` calls these and never touches a private Keras name itself, so a Keras
upgrade that moves one of them breaks here, and ``tests/models/test_keras_internals.py``
says which. The tested Keras range is pinned in ``pyproject.toml``.

Implementation details relied on (not private names, but not promised either):

- Initializers and seed generators built without an explicit ``seed`` draw one from Python's
  global :mod:`random` (``keras.src.random.seed_generator.make_default_seed``), so seeding
  ``random`` around a model's construction fixes its initial weights (:func:`seeded_weights`).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_SEED_LOCK = threading.Lock()


@contextmanager
def seeded_weights(seed: int) -> Iterator[None]:
    """Models built inside get the same initial weights for the same ``seed``, in any process.

    Python's ``random`` state is set to ``seed`` for the duration and restored afterwards, so
    code outside sees no change; a lock keeps two such builds in threads from interleaving.
    NumPy, TensorFlow and Keras's global ``SeedGenerator`` are not touched (not needed).
    """
    with _SEED_LOCK:
        saved = random.getstate()
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(saved)
