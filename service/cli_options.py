"""Options every client command of the CLI takes: the API's URL and key."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])
DEFAULT_URL = "http://127.0.0.1:8000"
client_options = [
    click.option("--url", envvar="CONVSCOPE_URL", default=DEFAULT_URL, show_default=True,
                 help="The convscope API (env CONVSCOPE_URL)."),
    click.option("--api-key", envvar="CONVSCOPE_API_KEY", default=None,
                 help="Bearer key when the server requires one (env CONVSCOPE_API_KEY)."),
]


def with_client(func: F) -> F:
    for option in reversed(client_options):
        func = option(func)
    return func
