"""`sal3d predict` on a stream SOURCE (`stages.predict_stream`): stdin, --maps-out on stdout, a stream cut
or interrupted mid-way, --drop-late's buffer, a URL that does not answer."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import sal3d
from sal3d.pipeline.predictions import PredictError
from sal3d.pipeline.stream_source import StreamError, StreamInfo
from sal3d.stages.predict import PredictConfig, source_kind
from sal3d.stages.predict_stream import LatestFrames, StreamOutputs, StreamSummary, run_stream, stream_name

from test_predict import make_checkpoint, read_png

HEIGHT, WIDTH = 48, 64


def sal3d_command(*args: str) -> list[str]:
    """The command line of `sal3d ARGS` run by this interpreter."""
    return [sys.executable, "-m", "sal3d", *args]


def write_clip(path: Path, frames: int, seed: int = 0, fps: int = 25) -> Path:
    """A clip of `frames` 64x48 frames (a moving bright square on noise), in the container of `path`'s
    extension (.avi, .ts), at `fps`."""
    pytest.importorskip("imageio_ffmpeg")
    from sal3d.pipeline.ffmpeg import VideoEncoder

    rng = np.random.default_rng(seed)
    with VideoEncoder(path, WIDTH, HEIGHT, fps=fps) as video:
        for t in range(frames):
            frame = rng.integers(0, 120, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            frame[10:26, (3 * t) % 48:(3 * t) % 48 + 16] = 250
            video.write(frame)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from sal3d.pipeline.trunk import load_trunk, quiet_random_warning

    with quiet_random_warning():
        trunk = load_trunk("random").fingerprint
    path = tmp_path_factory.mktemp("checkpoint") / "decoder.pt"
    make_checkpoint(path, trunk)
    return path


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def run_record(out: Path) -> dict:
    return json.loads((out / "predict.json").read_text())["runs"][-1]


def test_names_and_kinds():
    assert stream_name("-") == "stdin"
    assert stream_name("rtsp://cam.local:554/live/main") == "cam.local_554_live_main"
    assert stream_name("/dev/video0") == "dev_video0"
    assert source_kind("-") == "stream" and source_kind("udp://0.0.0.0:1234") == "stream"
    assert source_kind("https://bucket.example/features.zarr") == "store"


def test_stdin_gives_predicts_pngs_and_maps_out_the_same_bytes(tmp_path, checkpoint):
    """The clip piped through stdin gives exactly the PNGs of predict on the file (ffmpeg scales the
    frames to 224x224 as decord does), and --maps-out - puts those maps, and nothing else, on stdout."""
    clip = write_clip(tmp_path / "clips" / "clip.avi", 12)
    sal3d.predict(clip, checkpoint, tmp_path / "from_file", device="cpu")
    with open(clip, "rb") as stdin:
        done = subprocess.run(sal3d_command("predict", "-", str(checkpoint), str(tmp_path / "from_stdin"),
                                            "--maps-out", "-", "--device", "cpu"),
                              stdin=stdin, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    expected = [read_png(p) for p in pngs(tmp_path / "from_file" / "clip")]
    got = pngs(tmp_path / "from_stdin" / "stdin")
    assert [p.name for p in got] == [f"{i:04d}.png" for i in range(1, 13)]
    for want, path in zip(expected, got):
        assert np.array_equal(read_png(path), want), path.name
    assert done.stdout == b"".join(m.tobytes() for m in expected)
    assert b"-s 64x48 -r 25" in done.stderr  # the size and rate a reader needs, said at the start
    run = run_record(tmp_path / "from_stdin")
    assert (run["ended"], run["frames"], run["dropped"], run["source_kind"]) == ("end of stream", 12, 0, "stream")


def test_a_cut_stream_ends_cleanly_with_its_frames(tmp_path, checkpoint):
    clip = write_clip(tmp_path / "clip.ts", 24)
    data = clip.read_bytes()
    (tmp_path / "half.ts").write_bytes(data[:len(data) // 2])
    with open(tmp_path / "half.ts", "rb") as stdin:
        done = subprocess.run(sal3d_command("predict", "-", str(checkpoint), str(tmp_path / "out"), "--device", "cpu",
                                            "--name", "cut"), stdin=stdin, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    written = pngs(tmp_path / "out" / "cut")
    run = run_record(tmp_path / "out")
    assert 3 < len(written) < 24 and run["frames"] == len(written) and run["ended"] == "end of stream"
    # a second stream under the same name is refused (a stream is not resumed), nothing touched
    with pytest.raises(PredictError, match="--name"):
        sal3d.predict("-", checkpoint, tmp_path / "out", name="cut")
    assert len(pngs(tmp_path / "out" / "cut")) == len(written)


def test_sigint_mid_stream_exits_130_with_the_frames_so_far(tmp_path, checkpoint):
    """A pipe kept open (the stream goes on) and Ctrl-C: exit 130, the PNGs so far complete, predict.json
    saying how it ended and how many frames."""
    clip = write_clip(tmp_path / "clip.ts", 150)
    out = tmp_path / "out"
    process = subprocess.Popen(sal3d_command("predict", "-", str(checkpoint), str(out), "--device", "cpu",
                                             "--max-batch", "2"),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # all of it (from a thread: the pipe takes it only as fast as the model goes), and the pipe stays
        # open: no end of stream
        threading.Thread(target=process.stdin.write, args=(clip.read_bytes(),), daemon=True).start()
        deadline = time.monotonic() + 90
        while len(pngs(out / "stdin")) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr.decode()
    run = run_record(out)
    written = pngs(out / "stdin")
    assert run["ended"] == "interrupted (Ctrl-C)" and run["frames"] == len(written) >= 2
    assert len(written) < 150
    assert not [p for p in (out / "stdin").iterdir() if p.suffix != ".png"]  # no temporary left


def test_drop_late_keeps_the_newest_frames_and_counts_the_rest():
    """The buffer of --drop-late: a producer far ahead of its consumer leaves the newest `capacity`
    frames, in order, and counts every other one as dropped; an error of the source comes after them."""
    frames = (np.full((2, 2, 3), i, np.uint8) for i in range(20))
    latest = LatestFrames(frames, capacity=3)
    latest.thread.join(timeout=10)
    items = list(latest)
    assert [index for index, _, _ in items] == [17, 18, 19]
    assert [int(frame[0, 0, 0]) for _, _, frame in items] == [17, 18, 19]
    assert latest.dropped == 17

    def broken():
        yield np.zeros((2, 2, 3), np.uint8)
        raise OSError("the camera went away")

    latest = LatestFrames(broken(), capacity=3)
    got = []
    with pytest.raises(OSError, match="went away"):
        for index, _, _ in latest:
            got.append(index)
    assert got == [0]


def test_a_url_that_does_not_answer_fails_in_seconds_with_one_line(tmp_path, checkpoint):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the connection, never answers
    port = server.getsockname()[1]
    try:
        began = time.monotonic()
        with pytest.raises(StreamError) as raised:
            sal3d.predict(f"http://127.0.0.1:{port}/live", checkpoint, tmp_path / "out", stall_timeout=2, device="cpu")
        took = time.monotonic() - began
    finally:
        server.close()
    message = str(raised.value)
    assert message.startswith(f"http://127.0.0.1:{port}/live: cannot be opened") and "\n" not in message
    assert took < 20
    assert not pngs(tmp_path / "out" / f"127.0.0.1_{port}_live")


def test_a_stream_that_breaks_ends_with_its_frames_and_fails(tmp_path, checkpoint):
    """A source that gives 7 frames, then fails (as FrameStream does on a stall or a break): the maps of
    those frames are written, the source is closed, and the summary says why it failed."""
    class Breaking:
        info = StreamInfo("rtsp://cam/live", WIDTH, HEIGHT, 25.0)
        closed = False

        def __iter__(self):
            rng = np.random.default_rng(1)
            for _ in range(7):
                yield rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            raise StreamError("rtsp://cam/live: failed after 7 frame(s): no frame within 2 s")

        def close(self):
            self.closed = True

    predictor = sal3d.load(checkpoint, device="cpu")
    source, summary = Breaking(), StreamSummary("cam")
    run_stream(predictor, source, StreamOutputs(folder=tmp_path), PredictConfig("rtsp://cam/live", checkpoint, tmp_path),
               summary)
    assert source.closed and summary.frames == 7 and len(pngs(tmp_path)) == 7
    assert summary.failed == {"cam": "rtsp://cam/live: failed after 7 frame(s): no frame within 2 s"}
    assert summary.ended.startswith("failed: rtsp://cam/live")
