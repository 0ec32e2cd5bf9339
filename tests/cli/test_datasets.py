"""``convscope datasets`` against a live API (gunicorn) and a real worker: make-shapes writes
a dataset with ground truth offline, upload reads it back with its labels and boxes, list,
show and rm see and remove it; register reads a server folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_commands import cli
from tests.pipeline import serve_api
from tests.service.dataset_stack import Stack, stack_fixture  # noqa: F401 - 'stack'


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[str]:
    with serve_api(stack.env, stack.base / "api.log") as url:
        yield url


def test_make_shapes_upload_list_show_rm(stack: Stack, api: str, tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    made = cli("datasets", "make-shapes", "--n", "60", "--out", str(out), "--seed", "1")
    assert made.returncode == 0, made.stderr
    assert len(list(out.glob("*.png"))) == 60 and (out / "labels.csv").is_file()
    archive = shutil.make_archive(str(tmp_path / "shapes"), "zip", out)
    key = ("--url", api, "--api-key", "key-a")
    done = cli("datasets", "upload", archive, "--name", "toy", *key)
    assert done.returncode == 0, done.stderr
    dataset = json.loads(done.stdout)
    assert (dataset["status"], dataset["images"], dataset["name"]) == ("ready", 60, "toy")
    assert dataset["has_labels"] and dataset["has_boxes"] and dataset["skipped"] == []
    assert dataset["classes"] == sorted(["circle", "square", "triangle", "star", "cross",
                                         "ring"])
    listed = cli("datasets", "list", *key)
    assert listed.returncode == 0 and dataset["id"] in listed.stdout and "toy" in listed.stdout
    other = cli("datasets", "list", "--url", api, "--api-key", "key-b")
    assert other.returncode == 0 and dataset["id"] not in other.stdout
    shown = cli("datasets", "show", dataset["id"], *key)
    assert json.loads(shown.stdout)["id"] == dataset["id"]
    assert cli("datasets", "rm", dataset["id"], *key).returncode == 0
    gone = cli("datasets", "show", dataset["id"], *key)
    assert gone.returncode == 1 and "no dataset" in gone.stderr


def test_register_a_server_folder(stack: Stack, api: str) -> None:
    folder = stack.allowed / "cli-shapes"
    assert cli("datasets", "make-shapes", "--n", "12", "--out", str(folder)).returncode == 0
    key = ("--url", api, "--api-key", "key-a")
    done = cli("datasets", "register", str(folder), *key)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 12
    refused = cli("datasets", "register", str(stack.base / "outside"), *key)
    assert refused.returncode == 1 and "not inside" in refused.stderr
