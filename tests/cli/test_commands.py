"""The CLI as a newcomer uses it against a live API: an explain job saved to --out, the layer
table with its arithmetic, an upload named and then used by name, local weights installed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import requests

from tests.cli.conftest import clean_env, write_shape_images
from tests.service.job_http import keras_bytes, tiny_model


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_the_convscope_command_is_where_the_readme_says() -> None:
    """`make` installs into .venv: the README sends users to .venv/bin/convscope."""
    exe = Path(sys.executable).parent / "convscope"
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f".venv/bin/{exe.name}" in readme and "source .venv/bin/activate" in readme
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "submit" in done.stdout and "layers" in done.stdout


def test_submit_explain_writes_its_result(api_url: str, tmp_path: Path) -> None:
    image = write_shape_images(tmp_path / "in", 1)[0]
    out = tmp_path / "out"
    done = cli("submit", str(image), "--model", "shapes", "--kind", "explain", "--layer",
               "conv1", "-o", "filter=3", "-o", "y=10", "-o", "x=12", "--out", str(out),
               "--url", api_url)
    assert done.returncode == 0, done.stderr
    [result] = list(out.glob("*/result.json"))
    job = json.loads(result.read_text())
    item = job["result"]["items"][0]
    assert job["status"] == "succeeded" and job["artifacts"] == []
    assert abs(item["activation"] - item["model_activation"]) < 1e-4


def test_layers_prints_the_arithmetic(api_url: str) -> None:
    rows = requests.get(f"{api_url}/v1/models/shapes/layers", timeout=60).json()["layers"]
    done = cli("layers", "shapes", "--url", api_url)
    assert done.returncode == 0, done.stderr
    for row in rows:
        if row["type"] != "Conv2D":
            continue
        kh, kw = row["kernel_size"]
        c_in = row["params"] // row["filters"] - 1  # (kh·kw·c_in + 1)·filters
        c_in //= kh * kw
        assert f"({kh}·{kw}·{c_in} + 1)·{row['filters']} = {row['params']}" in done.stdout
    conv1 = next(r for r in rows if r["name"] == "conv1")
    n = conv1["output_shape"][0]  # same padding, stride 1: n in, n out
    assert f"ceil({n}/1) = {n} outputs" in done.stdout
    brief = cli("layers", "shapes", "--brief", "--url", api_url)
    assert "params:" not in brief.stdout and "conv1" in brief.stdout


def test_upload_by_name_then_use_the_name(api_url: str, tmp_path: Path) -> None:
    name = f"mine-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "mine.keras"
    path.write_bytes(keras_bytes(tiny_model(), tmp_path))
    done = cli("models", "upload", str(path), "--name", name, "--url", api_url)
    assert done.returncode == 0, done.stderr
    model_id = json.loads(done.stdout)["id"]
    assert f"--model {name}" in done.stderr and model_id in done.stderr
    image = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 30, 30)).save(image)
    job = cli("submit", str(image), "--model", name, "--kind", "gradcam", "--out",
              str(tmp_path / "out"), "--url", api_url)
    assert job.returncode == 0, job.stderr
    assert list((tmp_path / "out").glob("*/overlay.png"))


def test_models_weights_installs_a_local_file(tmp_path: Path) -> None:
    legacy = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n fake weights")
    data = tmp_path / "data"
    done = cli("models", "weights", "resnet50", str(legacy),
               env=clean_env(CONVSCOPE_DATA_DIR=str(data)))
    assert done.returncode == 0, done.stderr
    assert (data / "weights" / "resnet50.h5").read_bytes() == legacy.read_bytes()
    modern = tmp_path / "my.weights.h5"
    modern.write_bytes(b"new format")
    assert cli("models", "weights", "resnet50", str(modern),
               env=clean_env(CONVSCOPE_DATA_DIR=str(data))).returncode == 0
    assert (data / "weights" / "resnet50.weights.h5").read_bytes() == b"new format"
    assert not (data / "weights" / "resnet50.h5").exists()  # one weights file per model
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"x")
    refused = cli("models", "weights", "resnet50", str(bad),
                  env=clean_env(CONVSCOPE_DATA_DIR=str(data)))
    assert refused.returncode == 2 and ".h5" in refused.stderr
    assert cli("models", "weights", "shapes", str(modern)).returncode == 2  # not an application


def test_submit_says_how_a_job_ended_otherwise() -> None:
    """A failed job's code and message; a canceled one without a null error; one still
    running after the wait with where to follow it."""
    from service.cli import _not_succeeded

    failed = {"id": "j1", "status": "failed",
              "error": {"code": "invalid_image", "message": "image 0 is empty"}}
    assert _not_succeeded(failed) == "job j1 failed: invalid_image: image 0 is empty"
    assert _not_succeeded({"id": "j2", "status": "canceled", "error": None}) == \
        "job j2 was canceled"
    assert "GET /v1/jobs/j3" in _not_succeeded({"id": "j3", "status": "running"})
