"""What ``convscope batch`` and the client check before they send anything: the images of
SOURCE (a glob through a folder link that loops finds each image once), the results an
interrupted run left (a half-written last line), the run OUT holds (resumed only with the
same model, kind, layer and options), the API's URL, and the paths of ``Client.map``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest

from service.batch import (
    check_same_run,
    check_source,
    find_images,
    image_key,
    images_of,
    load_done,
)


def test_a_glob_through_a_looping_link_finds_each_image_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        (src / name).write_bytes(b"x")
    (src / "sub" / "loop").symlink_to("..", target_is_directory=True)
    found = find_images(f"{src}/**/*.png")
    assert found == [src / "a.png", src / "sub" / "b.png"]
    assert find_images(str(src)) == found  # a folder: links not followed


def test_a_half_written_last_line_is_computed_again(tmp_path: Path) -> None:
    rows = [{"image": "a.png", "status": "succeeded"}, {"image": "b.png", "status": "failed"},
            {"image": "c.png", "status": "succeeded"}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "results.jsonl").write_text(text + '{"image": "d.png", "sta')
    assert sorted(load_done(tmp_path / "results.jsonl")) == ["a.png", "c.png"]


def test_out_resumes_only_the_run_it_holds(tmp_path: Path) -> None:
    run = {"model": "shapes", "kind": "gradcam", "layer": None, "options": {"method": "gradcam"}}
    check_same_run(tmp_path, run)  # a new folder: the run is kept
    check_same_run(tmp_path, dict(run))  # the same run again
    for change in ({"options": {"method": "layercam"}}, {"kind": "saliency"},
                   {"model": "cifar10"}, {"layer": "conv2"}):
        with pytest.raises(click.ClickException) as caught:
            check_same_run(tmp_path, {**run, **change})
        (key,) = change
        assert f"{key} {run[key]!r} -> {change[key]!r}" in caught.value.message
    assert json.loads((tmp_path / "run.json").read_text()) == run  # unchanged by a refusal


def test_source_must_exist_and_out_must_not_hold_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for source, out, refusal in ((str(tmp_path / "nope"), tmp_path / "o", "no such file"),
                                 (str(src), src, "is SOURCE or holds it"),
                                 (str(src / "sub"), src, "is SOURCE or holds it"),
                                 (f"{src}/*.png", src, "is SOURCE or holds it")):
        with pytest.raises(click.ClickException, match=refusal):
            check_source(source, out)
    check_source(str(src), src / "out")  # inside SOURCE: allowed, never taken for input
    check_source(f"{tmp_path}/nothing/*.png", tmp_path / "o")  # a glob matching nothing


def test_a_url_that_is_not_http_and_one_path_for_many_are_refused_at_once() -> None:
    from click.testing import CliRunner

    from service.cli import main
    from service.client import Client

    for url in ("not a url", "ftp://host/", "http://"):
        with pytest.raises(ValueError, match="not an http"):
            Client(url)
        answer = CliRunner().invoke(main, ["layers", "shapes", "--url", url])
        assert answer.exit_code == 2 and "is not an http(s) URL" in answer.output, answer.output
    client = Client("http://127.0.0.1:9")  # nothing listens: nothing is sent either way
    for one in ("star.png", Path("star.png")):
        with pytest.raises(TypeError, match="not one path"):
            client.map(one, model="shapes", kind="gradcam")


def test_wait_refuses_a_poll_of_zero_and_a_job_without_an_id() -> None:
    from service.client import Client

    client = Client("http://127.0.0.1:9")  # nothing listens: each is refused before sending
    for poll in (0, -1.0, float("nan"), 1e-9):  # 0 asked the server again and again
        with pytest.raises(ValueError, match="poll must be at least"):
            client.wait("j1", poll=poll)
    for job in ({}, {"id": 7}, {"id": ""}, "", None, ["j1"]):  # {} was a bare KeyError
        with pytest.raises(TypeError, match="a job id or a job"):
            client.wait(job)  # type: ignore[arg-type]


def test_an_output_folder_that_cannot_be_made_is_said_before_anything_is_sent(
        tmp_path: Path) -> None:
    from click.testing import CliRunner

    from service.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the folder would go
    for args in (["submit", str(blocker), "--model", "shapes", "--kind", "gradcam"],
                 ["batch", str(tmp_path), "--model", "shapes", "--kind", "gradcam"]):
        answer = CliRunner().invoke(main, [*args, "--out", str(blocker / "out"),
                                           "--url", "http://127.0.0.1:9"])  # nobody there
        assert answer.exit_code == 1, answer.output
        assert "cannot make the output folder" in answer.output
        assert answer.exception is None or isinstance(answer.exception, SystemExit)


def test_a_file_is_kept_by_its_path_through_no_link(tmp_path: Path) -> None:
    """A link to an image already in the batch is left out (and counted), whichever sorts
    first: ``a.png`` rather than ``0link.png`` (a link to it), ``sub/b.png`` rather than
    ``linkdir/b.png`` (a linked folder a glob's ``**`` follows)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png", "sub/c.png"):
        (src / name).write_bytes(b"x")
    (src / "0link.png").symlink_to(src / "a.png")
    (src / "linkdir").symlink_to(src / "sub", target_is_directory=True)
    assert images_of(str(src)) == ([src / "a.png", src / "sub" / "b.png",
                                    src / "sub" / "c.png"], 1)
    assert images_of(f"{src}/**/*.png") == images_of(str(src))[:1] + (3,)


def test_results_know_an_image_by_its_path_under_source(tmp_path: Path, monkeypatch) -> None:
    """However SOURCE is spelled, an image's key is its path relative to SOURCE, the
    ``folder`` its row holds (a row without one: its ``image``)."""
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    keys = {image_key(Path(spelled) / "sub" / "b.png", Path(spelled))
            for spelled in ("photos", "./photos", str(tmp_path / "photos"), "photos/sub/..")}
    assert keys == {"sub/b.png"}
    rows = [{"image": "/elsewhere/photos/sub/b.png", "folder": "sub/b.png",
             "status": "succeeded"}, {"image": "photos/old.png", "status": "succeeded"}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert sorted(load_done(tmp_path / "results.jsonl", Path("./photos"))) == \
        ["old.png", "sub/b.png"]  # an old row (no folder): its image as spelled then


def test_out_resumes_only_the_source_it_holds(tmp_path: Path) -> None:
    """``cats/IMG_1.png`` is not ``dogs/IMG_1.png``: another SOURCE into the same OUT is
    refused; a run.json from before it kept SOURCE takes it on."""
    run = {"model": "shapes", "kind": "gradcam", "layer": None, "options": {}}
    cats, dogs = str(tmp_path / "cats"), str(tmp_path / "dogs")
    (tmp_path / "run.json").write_text(json.dumps(run))  # an older OUT
    check_same_run(tmp_path, run, cats)
    assert json.loads((tmp_path / "run.json").read_text()) == {**run, "source": cats}
    check_same_run(tmp_path, run, cats)
    with pytest.raises(click.ClickException, match="source .*cats.* -> .*dogs"):
        check_same_run(tmp_path, run, dogs)


def test_names_that_are_not_utf8_go_into_a_form_and_a_key(tmp_path: Path) -> None:
    from service.client_map import _MapRun, _Slots
    from service.http_client import multipart

    name = os.fsdecode(b"caf\xe9 \"q\".png")
    body, _ = multipart({"kind": "gradcam"}, [("image", (name, b"PNG"))])
    assert b'filename="caf\xef\xbf\xbd %22q%22.png"' in body
    run = _MapRun({}, None, tmp_path, _Slots(1))
    assert run.key([tmp_path / name]) != run.key([tmp_path / "caf.png"])


def test_ctrl_c_stops_sending_then_quits(capsys) -> None:
    """A first SIGINT stops the records sending (no exception), a second raises
    KeyboardInterrupt; with SIGINT ignored at the start (nohup), nothing is installed."""
    import signal

    from service.batch import _first_interrupt_stops

    class Records:
        stopped = 0

        def stop(self) -> None:
            self.stopped += 1

    records, interrupts = Records(), []
    # as in a terminal: a CI runner's background job may start with SIGINT ignored
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _first_interrupt_stops(records, interrupts):  # type: ignore[arg-type]
                os.kill(os.getpid(), signal.SIGINT)
                assert records.stopped == 1 and interrupts == [signal.SIGINT]
                os.kill(os.getpid(), signal.SIGINT)
        assert "no more jobs are sent" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with _first_interrupt_stops(records, []):  # type: ignore[arg-type]
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
