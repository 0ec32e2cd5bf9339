"""Options every client command of the CLI takes: the API's URL and key."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from service.api_error import is_api_url
from service.http_client import TransportError

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
    """The command with ``--url`` and ``--api-key``; an answer it could not read (none in
    time, cut, not JSON) or a proxy it cannot use ends it with the reason, not a traceback."""
    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> object:
        try:
            return func(*args, **kwargs)
        except TransportError as exc:
            raise click.ClickException(f"no usable answer from the API: {exc}") from exc

    wrapped = cast(F, command)
    for option in reversed(client_options):
        wrapped = option(wrapped)
    return wrapped
