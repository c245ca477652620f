"""Frames of a live or piped source (a container on stdin, a URL, a capture device), read through ffmpeg.

`open_stream` starts ffmpeg (`pipeline.ffmpeg.require_ffmpeg`: imageio-ffmpeg's, else one on PATH) on
the source, asks it for raw rgb24 frames on its stdout, and returns a `FrameStream` that yields them
as uint8 (H, W, 3) arrays. The frame size is the one ffmpeg announces for its output stream on
stderr: ffmpeg probes the source once, so a container on stdin is read once (no second probe).

Nothing waits forever: ffmpeg gets the protocol's own I/O timeout where it has one, and a watchdog
thread kills ffmpeg when no output comes for `stall_timeout` seconds (while opening, or between
frames while the reader waits for one), which turns into a `StreamError`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.ffmpeg import FFmpegError, require_ffmpeg

__all__ = ["FrameStream", "StreamError", "StreamInfo", "ffmpeg_command", "is_stream_source", "open_stream"]

#: URL schemes read as streams (ffmpeg's protocols).
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://",
                  "srt://", "rtp://")
#: Capture-device prefixes: "avfoundation:NAME" (macOS), "dshow:video=NAME" (Windows); /dev/video* is v4l2.
DEVICE_PREFIXES = {"avfoundation:": "avfoundation", "dshow:": "dshow"}
#: Lines of ffmpeg's stderr kept for messages.
LOG_LINES = 20
# ffmpeg's "Output #0" stream line: "Stream #0:0: Video: rawvideo (RGB[24] / 0x...), rgb24(...), 64x48 [...], 25 fps"
_OUTPUT_STREAM = re.compile(r"Stream #\d+:\d+.*: Video: rawvideo.*?(?<![\w])([1-9]\d*)x([1-9]\d*)")
# The input's stream line: "Stream #0:0: Video: h264 (High), yuv420p(progressive), 640x360 [SAR 1:1 DAR 16:9], 25 fps"
_INPUT_STREAM = re.compile(r"Stream #\d+:\d+.*: Video: .*?(?<![\w])([1-9]\d*)x([1-9]\d*)")
_FPS = re.compile(r"([\d.]+) fps")


class StreamError(Sal3dError):
    """A stream that cannot be opened, stalls or breaks; the message names the source and says what went
    wrong (with ffmpeg's last stderr line)."""


@dataclass
class StreamInfo:
    """What ffmpeg announces of the source's video: its source string, frame size and rate (None when ffmpeg
    does not say)."""

    source: str
    width: int
    height: int
    fps: float | None


def is_stream_source(source: str) -> bool:
    """Whether `source` is read as a stream: "-" (a container on stdin), a URL of `STREAM_SCHEMES`, or a
    capture device (/dev/video*, "avfoundation:NAME", "dshow:video=NAME")."""
    source = str(source)
    lowered = source.lower()
    return (source == "-" or lowered.startswith(STREAM_SCHEMES) or source.startswith("/dev/video")
            or lowered.startswith(tuple(DEVICE_PREFIXES)))


def ffmpeg_command(ffmpeg: str, source: str, stall_timeout: float,
                   size: tuple[int, int] | None = None) -> list[str]:
    """The ffmpeg command line that writes `source`'s first video stream as raw rgb24 frames on stdout,
    every decoded frame once (``-fps_mode passthrough``) and as soon as decoded (slice threads only; the
    output flushed after each frame), corrupt packets dropped, with the protocol's own I/O timeout (in
    microseconds) set to `stall_timeout` where the protocol has one. `size` (height, width): frames
    resized to it by ffmpeg's bilinear scaler (what decord does when it decodes a video file at a given
    size), else at the source's size."""
    command = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "info"]
    if source != "-":
        command.append("-nostdin")  # ffmpeg would read keys (q, ...) from the terminal otherwise
    lowered = source.lower()
    microseconds = str(max(1, int(stall_timeout * 1e6)))
    if lowered.startswith(("rtsp://", "rtsps://", "udp://")):
        command += ["-timeout", microseconds]
    elif lowered.startswith(STREAM_SCHEMES):
        command += ["-rw_timeout", microseconds]
    # the truncated last packet of a cut stream is dropped, not decoded into a damaged frame
    # slice threads only: frame threads would hold back one decoded frame per thread (latency)
    command += ["-fflags", "+discardcorrupt", "-thread_type", "slice"]
    prefix = next((p for p in DEVICE_PREFIXES if lowered.startswith(p)), None)
    if source == "-":
        command += ["-i", "pipe:0"]
    elif prefix:
        command += ["-f", DEVICE_PREFIXES[prefix], "-i", source[len(prefix):]]
    elif source.startswith("/dev/video"):
        command += ["-f", "v4l2", "-i", source]
    else:
        command += ["-i", source]
    command += ["-map", "0:v:0", "-an", "-sn", "-fps_mode", "passthrough", "-flush_packets", "1"]
    if size is not None:
        command += ["-vf", f"scale={int(size[1])}:{int(size[0])}:flags=bilinear"]
    return command + ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def open_stream(source: str, *, stall_timeout: float = 10.0, stdin=None,
                size: tuple[int, int] | None = None) -> FrameStream:
    """Start ffmpeg on `source` and wait until it announces the video's size.

    source: "-", a URL or a capture device (`is_stream_source`), or any input ffmpeg opens (a file).
    stall_timeout: seconds without output (while opening, or while waiting for a frame) before ffmpeg
        is killed and StreamError raised.
    stdin: for "-", what ffmpeg reads (a file object with a file descriptor); default: this process's
        standard input.
    size: (height, width) of the frames to yield, resized by ffmpeg (bilinear); None: the source's
        size. `FrameStream.info` gives the source's size either way.
    Raises StreamError when ffmpeg is absent, exits before announcing a video (its last stderr line
    says why), or says nothing within stall_timeout.
    """
    source = str(source)
    if stall_timeout <= 0:
        raise ValueError(f"stall_timeout must be > 0 seconds, got {stall_timeout}")
    try:
        ffmpeg = require_ffmpeg(f"reading the stream {source}")
    except FFmpegError as error:
        raise StreamError(str(error)) from None
    command = ffmpeg_command(ffmpeg, source, stall_timeout, size)
    process = subprocess.Popen(command, stdin=(stdin if source == "-" else subprocess.DEVNULL),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                               start_new_session=sys.platform != "win32")  # Ctrl-C reaches us, we stop ffmpeg
    stream = FrameStream(source, process, stall_timeout)
    try:
        stream.wait_for_info()
    except BaseException:
        stream.close()
        raise
    return stream


class FrameStream:
    """The frames ffmpeg decodes from one source, in order; a context manager (closing stops ffmpeg).

    info: the `StreamInfo` ffmpeg announced (the source's size). frame_size: (height, width) of the
    frames yielded (the size ffmpeg's output announces). frames_read: frames yielded so far.
    Iterating yields uint8 (H, W, 3) RGB frames; it stops at the end of the stream (a partial last frame,
    from a stream cut mid-frame, is dropped); StreamError when ffmpeg exits with an error, or writes nothing
    for stall_timeout seconds while a frame is awaited (time the caller spends between frames does not
    count).
    """

    def __init__(self, source: str, process: subprocess.Popen, stall_timeout: float):
        self.source, self.process, self.stall_timeout = source, process, stall_timeout
        self.info: StreamInfo | None = None
        self.frame_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None  # (width, height) of the input's first video stream
        self.in_output = False  # ffmpeg's log has reached its "Output #0" section
        self.frames_read = 0
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self.announced = threading.Event()  # set once info is known, or ffmpeg's stderr has ended
        self.stalled = False
        self.closed = False
        self.waiting_since: float | None = None  # when the reader began waiting for output; None: not waiting
        self.lock = threading.Lock()
        self.log_reader = threading.Thread(target=self._read_log, name="ffmpeg-stderr", daemon=True)
        self.watchdog = threading.Thread(target=self._watch, name="ffmpeg-watchdog", daemon=True)
        self.log_reader.start()
        self.watchdog.start()

    def last_words(self) -> str:
        """ffmpeg's last non-empty stderr line (what it says went wrong), or "" when it said nothing."""
        lines = [line for line in list(self.log) if line.strip()]
        return lines[-1].strip() if lines else ""

    def wait_for_info(self) -> StreamInfo:
        """Wait (at most stall_timeout seconds) until ffmpeg announces its output video; StreamError when
        it exits first or stays silent."""
        self.waiting_since = time.monotonic()
        self.announced.wait()  # the watchdog kills a silent ffmpeg, which ends stderr and sets the event
        self.waiting_since = None
        if self.info is None:
            self.process.wait()
            raise self._failure("cannot be opened")
        return self.info

    def __iter__(self) -> Iterator[np.ndarray]:
        height, width = self.frame_size
        size = height * width * 3
        while not self.closed:
            data = self._read_exactly(size)
            if len(data) < size:  # the end of the stream (a partial frame from a cut is dropped)
                break
            self.frames_read += 1
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
        if self.closed:
            return
        code = self.process.wait()
        if self.stalled or code != 0:
            raise self._failure(f"failed after {self.frames_read} frame(s)")

    def close(self) -> None:
        """Stop ffmpeg (terminate, then kill after 2 s) and wait for it; safe to call twice."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.log_reader.join(timeout=2)
        self.watchdog.join(timeout=2)
        self.process.stderr.close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _failure(self, what: str) -> StreamError:
        if self.stalled:
            why = f"no {'video' if self.info is None else 'frame'} within {self.stall_timeout:g} s"
            words = self.last_words() if self.info is None else ""  # once frames came, its log is old news
            return StreamError(f"{self.source}: {what}: {why}" + (f" (ffmpeg: {words})" if words else ""))
        words = self.last_words() or f"ffmpeg exited with status {self.process.returncode}"
        return StreamError(f"{self.source}: {what}: {words}")

    def _read_exactly(self, size: int) -> bytes:
        """Up to `size` bytes of ffmpeg's stdout; fewer only at its end."""
        chunks, got = [], 0
        self.waiting_since = time.monotonic()
        try:
            while got < size:
                chunk = self.process.stdout.read(size - got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
                self.waiting_since = time.monotonic()  # output is coming: not a stall
        except (OSError, ValueError):  # the pipe closed under us by close()
            pass
        finally:
            self.waiting_since = None
        return b"".join(chunks)

    def _read_log(self) -> None:
        """Keep ffmpeg's last stderr lines; parse the output stream's size and rate from them."""
        pending = b""
        stderr = self.process.stderr
        while True:
            try:
                chunk = stderr.read1(4096) if hasattr(stderr, "read1") else stderr.read(4096)
            except (OSError, ValueError):
                break
            if not chunk:
                break
            lines = re.split(rb"[\r\n]", pending + chunk)
            pending = lines.pop()
            for line in lines:
                self._note(line.decode(errors="replace"))
        if pending:
            self._note(pending.decode(errors="replace"))
        self.announced.set()

    def _note(self, line: str) -> None:
        self.log.append(line)
        if self.info is not None:
            return
        if line.startswith("Output #"):
            self.in_output = True
        elif self.input_size is None:  # the input's first video stream: the source's size (before any -vf)
            found = _INPUT_STREAM.search(line)
            if found:
                self.input_size = (int(found.group(1)), int(found.group(2)))
        match = _OUTPUT_STREAM.search(line) if self.in_output else None
        if match:
            fps = _FPS.search(line)
            self.frame_size = (int(match.group(2)), int(match.group(1)))
            width, height = self.input_size or (int(match.group(1)), int(match.group(2)))
            self.info = StreamInfo(self.source, width, height, float(fps.group(1)) if fps else None)
            self.announced.set()

    def _watch(self) -> None:
        """Kill ffmpeg when the reader has waited stall_timeout seconds for output."""
        while not self.closed and self.process.poll() is None:
            time.sleep(min(0.1, self.stall_timeout / 4))
            since = self.waiting_since
            if since is not None and time.monotonic() - since > self.stall_timeout:
                self.stalled = True
                self.process.kill()
                return
