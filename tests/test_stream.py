"""Streams: `Predictor.stream` (frames of any iterable, batched under a latency bound) and
`pipeline.stream_source` (frames of stdin, URLs and cameras through ffmpeg)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import sal3d
from sal3d.pipeline.frame_feed import FrameFeed
from sal3d.pipeline.stream_source import StreamError, ffmpeg_command, is_stream_source, open_stream

from test_predict import make_checkpoint

FRAMES, HEIGHT, WIDTH = 12, 48, 64


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> sal3d.Predictor:
    from sal3d.pipeline.trunk import load_trunk, quiet_random_warning

    with quiet_random_warning():
        trunk = load_trunk("random").fingerprint
        path = tmp_path_factory.mktemp("checkpoint") / "decoder.pt"
        make_checkpoint(path, trunk)
        return sal3d.load(path, device="cpu", size="224")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Twelve 64x48 frames: a moving bright square on noise, so that the maps differ between frames."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 120, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for t in range(FRAMES):
        frames[t, 10:26, 3 * t:3 * t + 16] = 250
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory, frames) -> Path:
    pytest.importorskip("imageio_ffmpeg")
    from sal3d.pipeline.ffmpeg import VideoEncoder

    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    with VideoEncoder(path, WIDTH, HEIGHT, fps=25) as video:
        for frame in frames:
            video.write(frame)
    return path


def generate(frames):
    yield from frames


# ---------------------------------------------------------------------------- Predictor.stream


@pytest.fixture(scope="module")
def whole_maps(predictor, frames) -> np.ndarray:
    """predict_frames' maps of the first seven frames (the sixth has the first full window, the seventh's
    crosses a batch of four)."""
    return predictor.predict_frames(frames[:7])


@pytest.mark.parametrize("max_batch, max_latency", [(1, None), (4, None), (4, 0.5)])
def test_stream_equals_predict_frames(predictor, frames, whole_maps, max_batch, max_latency):
    streamed = list(predictor.stream(generate(frames[:7]), max_batch=max_batch, max_latency=max_latency))
    assert len(streamed) == 7
    assert all(m.dtype == np.float32 and m.shape == (224, 224) for m in streamed)
    np.testing.assert_allclose(np.stack(streamed), whole_maps, atol=1 / 255, rtol=0)


def paced(count: int, interval: float):
    """`count` tiny frames, one every `interval` seconds."""
    for index in range(count):
        time.sleep(interval)
        yield np.full((2, 2, 3), index, np.uint8)


def test_feed_batches_follow_the_latency_rule():
    """Frames already waiting fill a batch; a frame not yet there is waited for only while the oldest
    frame's latency allows; without a bound, batches are full."""
    with FrameFeed([np.zeros((2, 2, 3), np.uint8)] * 6, lambda frame: frame, capacity=8) as feed:
        time.sleep(0.2)  # all six are waiting
        assert [len(b) for b in feed.batches(4, max_latency=0.01)] == [4, 2]
    with FrameFeed(paced(6, 0.1), lambda frame: frame, capacity=8) as feed:
        assert [len(b) for b in feed.batches(4, max_latency=None)] == [4, 2]
    with FrameFeed(paced(6, 0.1), lambda frame: frame, capacity=8) as feed:
        sizes = [len(b) for b in feed.batches(4, max_latency=0.15)]
    assert sum(sizes) == 6 and sizes[0] == 1 and max(sizes) <= 2, sizes  # the first: no cost estimate yet


def test_an_error_of_the_frames_reaches_the_caller_after_the_maps_before_it(predictor, frames):
    def broken():
        yield from frames[:3]
        raise OSError("camera unplugged")

    maps = []
    with pytest.raises(OSError, match="camera unplugged"):
        for saliency in predictor.stream(broken(), max_batch=2):
            maps.append(saliency)
    assert len(maps) == 3


def test_frames_of_another_size_are_refused(predictor, frames):
    small = np.zeros((24, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"frame 2 is 32x24 \(WxH\), but the stream's frames are 64x48"):
        list(predictor.stream([frames[0], frames[1], small], max_batch=1))


# ---------------------------------------------------------------------------- stream sources


def test_is_stream_source():
    for source in ["-", "rtsp://cam/1", "RTSP://cam/1", "http://host/live.m3u8", "https://h/x", "udp://0:1234",
                   "tcp://h:1", "srt://h:1", "rtmp://h/app", "/dev/video0", "avfoundation:0", "dshow:video=Cam"]:
        assert is_stream_source(source), source
    for source in ["clip.avi", "data/video", "./-", "s3://bucket/store.zarr", "memory://x", "/dev/null", ""]:
        assert not is_stream_source(source), source


def test_ffmpeg_command_reads_stdin_only_for_dash():
    assert "-nostdin" in ffmpeg_command("ffmpeg", "clip.avi", 2.0)
    assert "-nostdin" not in ffmpeg_command("ffmpeg", "-", 2.0)
    http = ffmpeg_command("ffmpeg", "http://h/x", 2.5)
    assert http[http.index("-rw_timeout") + 1] == "2500000"
    camera = ffmpeg_command("ffmpeg", "/dev/video0", 2.0)
    assert camera[camera.index("-i") - 2:camera.index("-i") + 2] == ["-f", "v4l2", "-i", "/dev/video0"]


def test_stdin_gives_the_clips_frames(clip):
    import decord

    expected = decord.VideoReader(str(clip))
    with open(clip, "rb") as stdin, open_stream("-", stdin=stdin) as stream:
        assert (stream.info.width, stream.info.height, stream.info.fps) == (WIDTH, HEIGHT, 25.0)
        got = np.stack(list(stream))
        assert stream.frames_read == FRAMES
    reference = expected.get_batch(range(len(expected))).asnumpy()
    assert got.shape == reference.shape == (FRAMES, HEIGHT, WIDTH, 3)
    difference = np.abs(got.astype(int) - reference).max()
    assert difference <= 2, difference  # the same decoder (libavcodec) and conversion: 0 here


def test_a_stream_cut_mid_way_gives_its_whole_frames_and_ends(clip, tmp_path):
    half = tmp_path / "half.avi"
    data = clip.read_bytes()
    half.write_bytes(data[:len(data) // 2])
    with open(half, "rb") as stdin, open_stream("-", stdin=stdin) as stream:
        got = list(stream)
    with open_stream(str(clip)) as stream:
        whole = list(stream)
    assert 0 < len(got) < FRAMES and stream.frames_read == FRAMES
    np.testing.assert_array_equal(np.stack(got), np.stack(whole[:len(got)]))  # no damaged last frame


@pytest.fixture
def silent_server():
    """A local TCP port that accepts connections and never replies."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.parametrize("scheme", ["http", "rtsp", "tcp"])
def test_a_url_that_does_not_answer_fails_in_seconds(silent_server, scheme):
    started = time.monotonic()
    with pytest.raises(StreamError, match=rf"^{scheme}://127.0.0.1:{silent_server}/live: cannot be opened: "
                                          r"no video within 2 s"):
        open_stream(f"{scheme}://127.0.0.1:{silent_server}/live", stall_timeout=2)
    assert time.monotonic() - started < 10


def test_a_closed_port_fails_at_once():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # free once closed
    started = time.monotonic()
    with pytest.raises(StreamError, match=rf"^http://127.0.0.1:{port}/live: cannot be opened: .*refused"):
        open_stream(f"http://127.0.0.1:{port}/live", stall_timeout=2)
    assert time.monotonic() - started < 10


def test_closing_the_maps_stops_the_frame_thread(predictor, frames):
    def endless():
        while True:
            yield frames[0]

    maps = predictor.stream(endless(), max_batch=1)
    next(maps)
    maps.close()
    deadline = time.monotonic() + 5
    while any(t.name == "frame-feed" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "frame-feed" for t in threading.enumerate())


def test_a_stream_that_stalls_fails_with_its_frames_done(clip):
    """The whole clip on a pipe that stays open: its frames come, then nothing -> StreamError in seconds."""
    read_end, write_end = os.pipe()
    os.write(write_end, clip.read_bytes())  # smaller than a pipe's buffer
    got = []
    started = time.monotonic()
    try:
        with os.fdopen(read_end, "rb") as stdin, open_stream("-", stdin=stdin, stall_timeout=1) as stream:
            with pytest.raises(StreamError, match=r"^-: failed after \d+ frame\(s\): no frame within 1 s$") as caught:
                for frame in stream:
                    got.append(frame)
    finally:
        os.close(write_end)
    assert f"after {len(got)} frame(s)" in str(caught.value) and time.monotonic() - started < 10
    # ffmpeg's MPEG-4 parser and the AVI demuxer hold the last frames until more data (or the end) comes
    assert FRAMES - 2 <= len(got) <= FRAMES


def test_without_ffmpeg_one_line_says_how_to_get_it(monkeypatch):
    import sal3d.pipeline.ffmpeg

    monkeypatch.setattr(sal3d.pipeline.ffmpeg, "ffmpeg_exe", lambda: None)
    with pytest.raises(StreamError, match=r"^reading the stream rtsp://cam/1 needs ffmpeg: pip install imageio-ffmpeg"):
        open_stream("rtsp://cam/1")


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(StreamError, match=rf"^{tmp_path}/none.avi: cannot be opened: .*No such file or directory"):
        open_stream(str(tmp_path / "none.avi"))
