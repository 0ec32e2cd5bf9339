"""What a ``convscope`` command loads before it does anything: every command (and each
``convscope batch``, before its first job) pays for these imports. The client speaks HTTP with
the standard library (``service.http_client``); ``requests`` alone took 0.17-0.19 s to import
on the 2-vCPU VMs."""

from __future__ import annotations

import json
import subprocess
import sys

# Libraries a command must not load just to start: the HTTP stacks the client replaced, and
# what only the API and the workers need.
HEAVY = ("requests", "urllib3", "charset_normalizer", "numpy", "PIL", "redis", "celery",
         "kombu", "flask", "apiflask", "werkzeug", "tensorflow", "keras", "gevent")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


def test_the_cli_and_the_client_load_no_heavy_library() -> None:
    loaded = _loaded_after("import service.cli, service.client, service.batch")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_probe_sees_a_heavy_import() -> None:
    assert "urllib3" in _loaded_after("import requests")
