"""The README's curl examples, run as a newcomer pastes them (from the repository root,
against a live API): every command succeeds and the files they fetch are real PNGs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def curl_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using the API with curl"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_curl_examples_run(api_url: str, tmp_path: Path) -> None:
    script = curl_block()
    assert "API=http://127.0.0.1:8000\n" in script
    script = script.replace("API=http://127.0.0.1:8000\n", f"API={api_url}\n")
    (tmp_path / "service").symlink_to(ROOT / "service")  # paths as from the repository root
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("grid.png", "overlay.png"):
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG" and img.width > 0
    assert '"pre_activation"' in done.stdout and '"receptive_field"' in done.stdout


def test_every_image_the_readme_names_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"(service/static/samples/\w+\.png)", readme))
    shots = set(re.findall(r"(docs/[\w-]+\.png)", readme))  # the screenshots shown
    assert named and {"docs/atlas-desktop.png", "docs/atlas-phone.png"} <= shots
    assert all((ROOT / path).is_file() for path in named | shots), named | shots
