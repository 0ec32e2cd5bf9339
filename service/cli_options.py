"""Options every client command of the CLI takes: the API's URL and key."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from service.api_error import is_api_url

F = TypeVar("F", bound=Callable[..., object])
DEFAULT_URL = "http://127.0.0.1:8000"


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not is_api_url(value):
        raise click.BadParameter(f"{value!r} is not an http(s) URL, e.g. {DEFAULT_URL}")
    return value


client_options = [
    click.option("--url", envvar="CONVSCOPE_URL", default=DEFAULT_URL, show_default=True,
                 callback=_url, help="The convscope API (env CONVSCOPE_URL)."),
    click.option("--api-key", envvar="CONVSCOPE_API_KEY", default=None,
                 help="Bearer key when the server requires one (env CONVSCOPE_API_KEY)."),
]


def with_client(func: F) -> F:
    for option in reversed(client_options):
        func = option(func)
    return func
