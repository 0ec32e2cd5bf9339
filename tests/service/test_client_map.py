"""``Client.map`` against the live API (gunicorn, the session's worker): images packed into
multi-image jobs, a bounded number in flight, every image's outputs equal to its own single
job's; and ``Client.events`` / ``convscope submit``'s progress, on the live stream and on a
scripted one (with the long-poll fallback when a server has no events endpoint)."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from flask import Flask, Response, request
from werkzeug.serving import make_server

from service.client import Client
from service.http_client import Response as ClientResponse
from service.http_client import TransportError
from tests.cli.conftest import write_shape_images
from worker.contract import ACTIVE, TERMINAL


class InFlight:
    """A response hook on the client's session: jobs the client made and has not yet seen end
    (an upper bound of what the server holds queued or running for it), and, each time a job
    was just made, how many of this run's jobs the server itself lists as queued or running."""

    def __init__(self, url: str) -> None:
        self.url, self.lock = url, threading.Lock()
        self.made: set[str] = set()
        self.open: set[str] = set()
        self.most_open = self.most_active = 0

    def __call__(self, resp: ClientResponse) -> None:
        method, path = resp.method, resp.url.split("?")[0]
        if method == "POST" and path == "/v1/jobs" and resp.status_code == 202:
            listed = requests.get(f"{self.url}/v1/jobs", params={"limit": 100}, timeout=30)
            with self.lock:
                self.made.add(resp.json()["id"])
                self.open.add(resp.json()["id"])
                self.most_open = max(self.most_open, len(self.open))
                active = [j for j in listed.json()["jobs"]
                          if j["id"] in self.made and j["status"] in ACTIVE]
                self.most_active = max(self.most_active, len(active))
        elif method == "GET" and path.count("/") == 3 and resp.status_code == 200:
            body = resp.json()
            if body["status"] in TERMINAL:
                with self.lock:
                    self.open.discard(body["id"])


def test_map_packs_images_bounds_jobs_and_matches_single_jobs(api_url: str,
                                                              tmp_path: Path) -> None:
    paths = write_shape_images(tmp_path / "in", 10, seed=11)
    (tmp_path / "in" / "sub").mkdir()
    paths[-1] = paths[-1].rename(tmp_path / "in" / "sub" / paths[-1].name)
    client = Client(api_url)
    watch = InFlight(api_url)
    client.session.hooks.append(watch)
    records = list(client.map(paths, model="shapes", kind="gradcam", images_per_job=4,
                              in_flight=2, out_dir=tmp_path / "out"))
    client.session.hooks.remove(watch)

    assert sorted(str(r["path"]) for r in records) == sorted(map(str, paths))
    assert all(r["status"] == "succeeded" for r in records), records
    jobs: dict[str, list[dict]] = {}
    for record in records:
        jobs.setdefault(record["job"], []).append(record)
    assert sorted(len(v) for v in jobs.values()) == [2, 4, 4]  # 10 images, 4 per job
    assert set(jobs) == watch.made  # no other job was made
    for members in jobs.values():  # packed in input order, each with its position
        members.sort(key=lambda r: r["index"])
        first = paths.index(members[0]["path"])
        assert [r["path"] for r in members] == paths[first:first + len(members)]
        assert [r["index"] for r in members] == list(range(len(members)))
    assert watch.most_open <= 2 and watch.most_active <= 2

    single = Client(api_url)
    for record in records:
        path = Path(record["path"])
        folder = tmp_path / "out" / path.relative_to(tmp_path / "in")  # a.png/, sub/j.png/
        assert {f.name for f in record["files"]} == \
            {"item.json", "heatmap.npy", "heatmap_png.png", "overlay.png"}
        assert all(f.parent == folder for f in record["files"])
        alone = single.wait(single.submit([path], model="shapes", kind="gradcam"))
        expected = np.load(io.BytesIO(single.artifact(alone["id"], "heatmap")))
        np.testing.assert_allclose(np.load(folder / "heatmap.npy"), expected, atol=1e-5)
        item = json.loads((folder / "item.json").read_text())
        assert item == record["item"]
        assert item["class_index"] == alone["result"]["items"][0]["class_index"]


def test_an_unreadable_image_fails_alone(api_url: str, tmp_path: Path) -> None:
    good = write_shape_images(tmp_path / "in", 2)
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"\x89PNG but not really")
    records = list(Client(api_url).map([good[0], bad, good[1]], model="shapes",
                                       kind="gradcam", out_dir=tmp_path / "out"))
    by_path = {r["path"]: r for r in records}
    assert len(records) == 3
    assert by_path[bad]["status"] == "failed" and by_path[bad]["job"] is None
    assert by_path[bad]["error"]["code"] == "invalid_image"
    assert "image 0" in by_path[bad]["error"]["message"]  # the keys of a failed job's error
    assert all(by_path[p]["status"] == "succeeded" for p in good)
    assert (tmp_path / "out" / "img01.png" / "overlay.png").is_file()


def test_map_refuses_what_it_cannot_do(api_url: str, tmp_path: Path) -> None:
    client = Client(api_url)
    with pytest.raises(ValueError, match="no image"):
        client.map([], model="shapes", kind="filters")
    with pytest.raises(ValueError, match="in flight"):
        client.map([], model="shapes", kind="gradcam", in_flight=0)
    with pytest.raises(ValueError, match="not inside"):
        client.map([tmp_path / "a.png"], model="shapes", kind="gradcam",
                   out_dir=tmp_path / "out", base=tmp_path / "elsewhere")


def test_events_follow_a_live_filters_job(api_url: str) -> None:
    client = Client(api_url)
    job = client.submit(model="shapes", kind="filters", layer="conv1",
                        options={"filters": [0, 1, 2], "steps": 30, "seed": 4})
    seen = list(client.events(job["id"]))
    assert seen and seen[-1]["status"] == "succeeded"
    assert all(s["status"] not in TERMINAL for s in seen[:-1])
    assert seen[-1] == client.job(job["id"])
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress)


@pytest.fixture()
def scripted() -> Iterator[tuple[str, dict]]:
    """A server with one filters job ``j1`` whose event stream (when ``state["events"]``) is
    scripted, and which records the paths asked."""
    app = Flask("scripted")
    state: dict = {"events": True, "asked": []}
    job = {"id": "j1", "kind": "filters", "status": "queued", "progress": 0.0,
           "artifacts": [], "result": None, "error": None}
    done = {**job, "status": "succeeded", "progress": 1.0, "result": {"filters": []}}

    @app.before_request
    def record() -> None:
        state["asked"].append(f"{request.method} {request.full_path.rstrip('?')}")

    @app.post("/v1/jobs")
    def submit():
        return {"id": "j1", "status": "queued"}, 202

    @app.get("/v1/jobs/j1")
    def get_job():
        return done

    @app.get("/v1/jobs/j1/events")
    def events():
        if not state["events"]:
            return {"code": "not_found", "detail": "no route"}, 404
        steps = [{**job, "status": "running", "progress": p} for p in (0.25, 0.5)]
        body = ": keep-alive\n\n" + "event: other\ndata: {}\n\n" + "".join(
            f"event: status\ndata: {json.dumps(s)}\n\n" for s in [job, *steps, done]) + \
            f"event: status\ndata: {json.dumps(job)}\n\n"  # after the end: never read
        return Response(body, mimetype="text/event-stream")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()


def test_events_parse_the_stream_and_stop_at_the_end(scripted) -> None:
    url, _ = scripted
    seen = list(Client(url).events("j1"))
    assert [(s["status"], s["progress"]) for s in seen] == \
        [("queued", 0.0), ("running", 0.25), ("running", 0.5), ("succeeded", 1.0)]


@pytest.mark.parametrize("events", [True, False], ids=["events", "no_events_endpoint"])
def test_submit_follows_events_or_long_polls(scripted, events: bool, tmp_path: Path) -> None:
    from service.cli import main

    url, state = scripted
    state["events"] = events
    done = CliRunner().invoke(main, ["submit", "--model", "shapes", "--kind", "filters",
                                     "--out", str(tmp_path), "--url", url])
    assert done.exit_code == 0, done.output
    result = json.loads((tmp_path / "j1" / "result.json").read_text())
    assert result["status"] == "succeeded"
    asked = state["asked"]
    assert "GET /v1/jobs/j1/events" in asked
    long_polls = [a for a in asked if a.startswith("GET /v1/jobs/j1?wait=")]
    assert bool(long_polls) is not events  # long-polled only without the events endpoint


@pytest.mark.parametrize(("most", "shape", "expected"), [
    (32, [224, 224, 3], 8), (32, [299, 299, 3], 4), (32, [64, 64, 3], 32), (4, [64, 64, 3], 4),
    (32, [128, 128, 3], 32), (32, [1024, 1024, 3], 1), (32, [None, None, 3], 32), (32, None, 32),
])
def test_job_size_keeps_large_inputs_in_small_jobs(most: int, shape, expected: int) -> None:
    from service.client_map import JOB_PIXELS, job_size

    size = job_size(most, shape)
    assert size == expected
    if shape and shape[0]:
        assert size == 1 or size * shape[0] * shape[1] <= JOB_PIXELS


@pytest.mark.parametrize(("n", "first", "most", "expected"), [
    (64, 8, 32, [8, 16, 32, 8]), (20, 8, 32, [8, 8, 4]), (5, 8, 32, [5]), (0, 8, 32, []),
    (160, 8, 32, [8, 16, 32, 32, 32, 32, 8]), (90, 8, 32, [8, 16, 32, 16, 8, 8, 2]),
    (70, 32, 32, [32, 32, 6]),
    (5, 1, 2, [1, 2, 1, 1]), (45, 20, 20, [20, 20, 5]),
])
def test_job_sizes_grow_then_shrink(n: int, first: int, most: int, expected: list) -> None:
    from service.client_map import job_sizes

    sizes = job_sizes(n, first, most)
    assert sizes == expected
    assert sum(sizes) == n and all(0 < size <= most for size in sizes)
    assert not sizes or sizes[-1] <= first


def test_job_sizes_keep_within_bounds() -> None:
    from service.client_map import job_sizes

    with pytest.raises(ValueError, match="at least one"):
        job_sizes(5, 1, 0)
    assert job_sizes(10, 8, 4) == [4, 4, 2]  # a first job larger than the most allowed
    assert job_sizes(3, 0, 4) == [1, 1, 1]
    for n in range(0, 70):
        for first, most in ((1, 1), (3, 7), (8, 32), (5, 5)):
            sizes = job_sizes(n, first, most)
            assert sum(sizes) == n and all(1 <= size <= most for size in sizes)


def test_pack_cuts_only_the_jobs_over_the_byte_budget(tmp_path: Path) -> None:
    """One large file splits its own job, not every job; an unreadable one counts 0."""
    from service.client_map import pack

    paths = []
    for i, nbytes in enumerate([100, 100, 100, 100, 5000, 100, 100, 100, 100]):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(b"x" * nbytes)
    paths.append(tmp_path / "missing")
    jobs = pack(paths, [7, 3], 450)
    assert [[p.name for p in job] for job in jobs] == [
        ["f0", "f1", "f2", "f3"], ["f4"], ["f5", "f6"], ["f7", "f8", "missing"]]
    assert pack(paths, [7, 3], 0) == [paths[:7], paths[7:]]


def test_map_sizes_jobs_by_the_models_input(tmp_path: Path) -> None:
    """Against a scripted server with a 224² model: 20 images go as jobs of 8, 8 and 4, also
    when no worker has described the model yet (map waits for it), 64 as 8, 16, 32 and 8
    (in that order, with 4 in flight), and as the server's maximum when the model is unknown
    to it; a request limit cuts only the jobs whose files pass it; no images: no request
    for the model."""
    app = Flask("sized")
    sizes: list[int] = []
    limits = {"max_images_per_job": 32}
    asked: list[str] = []

    @app.get("/v1/contract")
    def contract():
        return {"imageless_kinds": ["filters"], "single_image_kinds": ["explain"], **limits}

    @app.get("/v1/models/<name>")
    def model(name: str):
        asked.append(name)
        if name != "big":
            return {"code": "not_found", "detail": f"no model {name}"}, 404
        if not float(request.args.get("wait", 0)):  # as a built-in no worker has loaded yet
            return {"id": "big", "status": "loading", "input_shape": None}
        return {"id": "big", "status": "ready", "input_shape": [224, 224, 3]}

    @app.post("/v1/jobs")
    def submit():
        sizes.append(len(request.files.getlist("image")))
        return {"id": f"j{len(sizes)}", "status": "succeeded",
                "result": {"items": [{}] * sizes[-1]}}, 202

    @app.get("/v1/jobs/<job_id>")
    def get_job(job_id: str):
        n = sizes[int(job_id[1:]) - 1]
        return {"id": job_id, "status": "succeeded", "result": {"items": [{}] * n}}

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        paths = write_shape_images(tmp_path / "images", 64)
        client = Client(f"http://127.0.0.1:{server.server_port}")
        records = list(client.map(paths[:20], model="big", kind="gradcam", in_flight=1))
        assert [r["status"] for r in records] == ["succeeded"] * 20
        assert sizes == [8, 8, 4]
        sizes.clear()
        records = list(client.map(paths, model="big", kind="gradcam", in_flight=4))
        assert sorted(r["path"] for r in records) == sorted(paths)
        assert sizes == [8, 16, 32, 8]  # sent in order: the small last job is queued last
        sizes.clear()
        list(client.map(paths[:20], model="other", kind="gradcam", in_flight=1))
        assert sizes == [20]
        sizes.clear()
        big = tmp_path / "images" / "big.png"
        big.write_bytes(paths[0].read_bytes() * 10)
        files = paths[:12] + [big] + paths[12:20]
        total = sum(p.stat().st_size for p in files)
        limits["max_content_length"] = 2 * (total - 1)  # all but the last file fit
        list(client.map(files, model="other", kind="gradcam", in_flight=1))
        assert sizes == [20, 1]
        asked.clear()
        assert list(client.map([], model="big", kind="gradcam")) == [] and asked == []
    finally:
        server.shutdown()


def test_a_job_that_cannot_be_waited_for_is_not_sent_again(tmp_path: Path,
                                                           monkeypatch) -> None:
    """Its images were accepted as one job: a failed wait (the connection lost) fails that
    job's records and sends nothing more (no job per image, as after a refusal)."""
    app = Flask("lost")
    posts: list[int] = []

    @app.get("/v1/contract")
    def contract():
        return {"imageless_kinds": [], "single_image_kinds": [], "max_images_per_job": 8}

    @app.get("/v1/models/<name>")
    def model(name: str):
        return {"id": name, "status": "ready", "input_shape": [64, 64, 3]}

    @app.post("/v1/jobs")
    def submit():
        posts.append(len(request.files.getlist("image")))
        return {"id": f"j{len(posts)}", "status": "queued"}, 202

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        paths = write_shape_images(tmp_path / "images", 4)
        client = Client(f"http://127.0.0.1:{server.server_port}")

        def lost(*args, **kwargs):
            raise TransportError("connection reset")

        monkeypatch.setattr(client, "wait", lost)
        records = list(client.map(paths, model="m", kind="gradcam"))
        assert posts == [4]
        assert [(r["job"], r["status"]) for r in records] == [("j1", "failed")] * 4
        assert records[0]["error"]["code"] == "service_unavailable"
    finally:
        server.shutdown()


def test_a_short_client_timeout_still_waits_out_a_long_job(api_url: str) -> None:
    """Each long-poll ends before the client's own read timeout: a 1 s client waits for a
    filters job of several seconds, where its 20 s long-polls timed out (TransportError)."""
    client = Client(api_url, timeout=1.0)
    job = client.submit(model="shapes", kind="filters", layer="conv3",
                        options={"filters": list(range(8)), "steps": 160, "seed": 11})
    started = client.job(job["id"])
    done = client.wait(job, timeout=120)
    assert started["status"] in ACTIVE  # it was still computing when the wait began
    assert done["status"] == "succeeded", done


def test_a_file_name_that_is_not_utf8_is_mapped(api_url: str, tmp_path: Path) -> None:
    """Its bytes kept (surrogates in Python): the job goes, the name goes as U+FFFD, and its
    outputs go to a folder of the same bytes."""
    good = write_shape_images(tmp_path / "in", 2)
    odd = good[1].rename(tmp_path / "in" / os.fsdecode(b"caf\xe9.png"))
    client = Client(api_url)
    records = list(client.map([good[0], odd], model="shapes", kind="gradcam",
                              out_dir=tmp_path / "out"))
    assert [r["status"] for r in records] == ["succeeded", "succeeded"]
    job = client.job(records[1]["job"])
    assert job["inputs"][records[1]["index"]]["filename"] == "caf\ufffd.png"
    assert (tmp_path / "out" / odd.name / "overlay.png").is_file()
    assert os.fsencode(odd.name) in os.listdir(os.fsencode(tmp_path / "out"))
