"""Long-polling: the ``?wait=S`` query every waiting endpoint takes, and the one wait loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from apiflask import Schema
from apiflask.fields import Float

from service.backend import backend

T = TypeVar("T")


class WaitQuery(Schema):
    wait = Float(load_default=0.0)


def wait_for(read: Callable[[], T], done: Callable[[T], bool], seconds: float,
             interval: float = 0.1) -> T:
    """``read()`` until ``done`` holds or ``seconds`` (capped by ``max_wait``) have passed."""
    deadline = time.monotonic() + max(0.0, min(seconds, backend().settings.max_wait))
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = read()
    return value
