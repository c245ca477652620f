"""Prediction on a stream: `sal3d predict SOURCE CHECKPOINT [OUT_DIR]` where SOURCE is "-" (a container on
stdin), a URL or a capture device (`pipeline.stream_source.is_stream_source`).

Frames come from ffmpeg (`open_stream`) and go trunk -> decoder directly (`api.Predictor.stream`; no
feature store: the stream may never end), and each map is written as it comes::

    OUT_DIR/<name>/0001.png, 0002.png, ...   8-bit grey, the source frame's number (gaps: dropped frames)
    OUT_DIR/predict.json                      the settings (as predict's) and a run record per stream
    OUT_DIR/overlays/<name>/<frame>.png       with --overlay
    OUT_DIR/overlays/<name>.mp4               with --overlay-video, encoded as the frames come
    --maps-out -                              raw uint8 maps (h x w bytes per frame, row-major) on stdout

Resize. Which resize a stream's frames get is `stream_frame_size`'s rule, said here once: for a trunk
preset whose video frames the decoder resizes (torchvision), ffmpeg scales the frames to the trunk's
224x224 bilinearly, as decord does for `predict` on a video file, so the PNGs equal predict's on the
same file; with --overlay / --overlay-video full frames are needed, so frames come at their size and
are resized as `Predictor.predict_frames` does (PIL bilinear): maps may then differ from predict's on
the file by several grey levels (the two bilinear scalers differ). The keras-3dsal preset always decodes full frames (cv2 resize).

Endings. The end of the stream, Ctrl-C and SIGTERM end the run with everything so far written (the
PNGs complete, the overlay video closed and playable, predict.json's run record saying how it ended
and how many frames); the interruption is then raised again (the command exits 130 / 143). A
stream that stalls or breaks (`StreamError`) ends the same way, with the run recorded as failed. A
reader of --maps-out that quits (a broken pipe) ends the run cleanly.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from sal3d.pipeline.contract import INPUT_SIZE
from sal3d.pipeline.datasets import OVERLAY_DIR
from sal3d.pipeline.overlay import OverlayStyle, OverlayVideoWriter, overlay, video_fps
from sal3d.pipeline.postprocess import PostProcess, quantize, write_png
from sal3d.pipeline.predictions import PredictError, default_png_writers, overlay_video_path
from sal3d.pipeline.preprocessing import Preprocessing
from sal3d.pipeline.progress import Progress, say
from sal3d.pipeline.stream_source import FrameStream, StreamError, open_stream

#: Recent frames whose latency the p50 is taken over (memory stays flat on an endless stream).
LATENCY_WINDOW = 4096


@dataclass
class StreamSummary:
    """What a stream run did: frames predicted and dropped, seconds (first frame asked to the last map
    written), the latency p50 (seconds, frame read -> map out, over the last LATENCY_WINDOW frames), how
    it ended, and {name: why} when the stream failed (stall, break)."""

    name: str
    frames: int = 0
    dropped: int = 0
    seconds: float = 0.0
    latency_p50: float | None = None
    ended: str = "end of stream"
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        latency = "-" if self.latency_p50 is None else f"{self.latency_p50 * 1000:.0f} ms"
        return (f"predict: stream {self.name}: {self.frames} frames, {self.dropped} dropped, in {self.seconds:.1f} s "
                f"({self.frames_per_second:.2f} frames/s), latency p50 {latency}; ended: {self.ended}")


def stream_frame_size(preprocessing: Preprocessing, full_frames: bool) -> tuple[int, int] | None:
    """The (height, width) ffmpeg is asked to scale a stream's frames to, or None for the source's size.

    The one place of the rule: a preset whose video frames the decoder resizes gets them at the trunk's
    input size from ffmpeg's bilinear scaler (what decord gives `predict` on a file: the same maps);
    full frames when they are needed (overlays) or when the preset resizes them itself (cv2)."""
    return (INPUT_SIZE, INPUT_SIZE) if preprocessing.decoder_resizes and not full_frames else None


def stream_name(source: str) -> str:
    """The default folder name of a stream's maps: "stdin" for "-", else the URL or device sanitised
    (letters, digits, "._-" kept, the rest as "_"; the scheme dropped)."""
    if source == "-":
        return "stdin"
    text = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*:(//)?", "", source).strip("/")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "stream"
    return name[:80]


class LatestFrames:
    """The --drop-late buffer: a thread reads `frames` as fast as they come into a buffer of at most
    `capacity` frames; when a frame comes and the buffer is full, the oldest waiting frame is dropped
    (counted in `dropped`), so the model always gets the newest frames.

    Iterating yields (source index, time read (time.monotonic), frame), in order; an error of `frames`
    is raised after the frames before it. `close` stops taking frames (the thread ends with the source).
    """

    def __init__(self, frames: Iterable[np.ndarray], capacity: int):
        self.frames, self.capacity = frames, max(1, int(capacity))
        self.buffer: deque = deque()
        self.dropped = 0
        self.error: BaseException | None = None
        self.done = self.closed = False
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._pull, name="drop-late", daemon=True)
        self.thread.start()

    def _pull(self) -> None:
        try:
            for index, frame in enumerate(self.frames):
                with self.condition:
                    if self.closed:
                        return
                    if len(self.buffer) >= self.capacity:
                        self.buffer.popleft()
                        self.dropped += 1
                    self.buffer.append((index, time.monotonic(), frame))
                    self.condition.notify()
        except BaseException as error:  # the source's error, raised in the consumer after its frames
            self.error = error
        finally:
            with self.condition:
                self.done = True
                self.condition.notify()

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        while True:
            with self.condition:
                while not self.buffer and not self.done:
                    self.condition.wait(0.1)
                if self.buffer:
                    item = self.buffer.popleft()
                elif self.error is not None:
                    raise self.error
                else:
                    return
            yield item

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.buffer.clear()


def numbered(frames: Iterable[np.ndarray]) -> Iterator[tuple[int, float, np.ndarray]]:
    """(source index, time read, frame) per frame of `frames`: the order-keeping counterpart of
    `LatestFrames` (no frame dropped: the source is read as fast as the model takes frames)."""
    for index, frame in enumerate(frames):
        yield index, time.monotonic(), frame


@contextlib.contextmanager
def maps_output(target: str | None):
    """A binary file for --maps-out (None: none). For "-" it is this process's stdout, which is then
    reserved for the maps: file descriptor 1 and sys.stdout point at stderr until the block ends, so no
    other output (ours, a library's) can mix with them."""
    if target is None:
        yield None
        return
    if target != "-":
        with open(target, "wb", buffering=0) as output:
            yield output
        return
    sys.stdout.flush()
    saved = os.dup(1)
    output = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    python_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        yield output
    finally:
        sys.stdout = python_stdout
        os.dup2(saved, 1)
        os.close(saved)
        with contextlib.suppress(OSError):
            output.close()


@dataclass
class StreamOutputs:
    """Where a stream's maps go: `folder` (PNGs; None without OUT_DIR), `overlay_folder` (--overlay),
    `video` (--overlay-video, opened), `maps_out` (--maps-out file), and the overlay `style`."""

    folder: Path | None
    overlay_folder: Path | None = None
    video: OverlayVideoWriter | None = None
    maps_out: object = None
    style: OverlayStyle = field(default_factory=OverlayStyle)

    @property
    def full_frames(self) -> bool:
        return self.overlay_folder is not None or self.video is not None


class StreamRun:
    """The loop of one stream: frames -> `Predictor.stream` -> maps written (PNG writer threads), drawn
    over their frames, sent to --maps-out; it counts frames, drops and latencies into `summary`."""

    def __init__(self, outputs: StreamOutputs, options: PostProcess, summary: StreamSummary, writers: int):
        self.outputs, self.options, self.summary = outputs, options, summary
        self.pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="png-writer")
        self.pending: deque[Future] = deque()
        self.limit = 4 * writers + 8  # PNG writes in flight before the loop waits for them
        self.waiting: deque = deque()  # (index, time read, frame or None) of the frames given to the model
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def feed(self, frames: Iterable[tuple[int, float, np.ndarray]]) -> Iterator[np.ndarray]:
        """The frames for the model, each noted in `waiting` (the maps come back in the same order)."""
        keep = self.outputs.full_frames
        for index, read, frame in frames:
            self.waiting.append((index, read, frame if keep else None))
            yield frame

    def __call__(self, maps: Iterator[np.ndarray], progress: Progress, drops=lambda: 0) -> None:
        """Write every map of `maps` (float32 (h, w), one per frame `feed` gave, in order)."""
        for saliency in maps:
            index, read, frame = self.waiting.popleft()
            image = quantize(torch.from_numpy(saliency)[None], self.options.rescale)[0].numpy()
            self.write(index, frame, image)
            self.latencies.append(time.monotonic() - read)
            self.summary.frames += 1
            self.summary.dropped = drops()
            progress.update(1, note=f"{self.summary.dropped} dropped" if self.summary.dropped else None)

    def write(self, index: int, frame: np.ndarray | None, image: np.ndarray) -> None:
        """One uint8 (h, w) map of source frame `index` to every output asked for."""
        outputs, name = self.outputs, f"{index + 1:04d}.png"
        if outputs.maps_out is not None:
            outputs.maps_out.write(np.ascontiguousarray(image).tobytes())  # unbuffered: one write per frame
        if outputs.folder is not None:
            self.pending.append(self.pool.submit(write_png, outputs.folder / name, image))
        if frame is not None:
            drawn = overlay(frame, image, outputs.style)
            if outputs.overlay_folder is not None:
                self.pending.append(self.pool.submit(write_png, outputs.overlay_folder / name, drawn))
            if outputs.video is not None:
                outputs.video.write(drawn)
        while len(self.pending) > self.limit or (self.pending and self.pending[0].done()):
            self.pending.popleft().result()

    def finish(self) -> None:
        """Wait for the PNG writes in flight; stop the writers; set the latency p50."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)
        if self.latencies:
            self.summary.latency_p50 = float(np.median(np.asarray(self.latencies)))


def ending(error: BaseException) -> str:
    """How a run that raised `error` ended, as predict.json's run record says it."""
    from sal3d.pipeline.lifetime import Terminated  # noqa: PLC0415

    if isinstance(error, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(error, BrokenPipeError):
        return "the reader of --maps-out closed it"
    return f"failed: {error}"


def run_stream(predictor, stream: FrameStream, outputs: StreamOutputs, config, summary: StreamSummary) -> None:
    """Predict every frame of `stream` into `outputs` until it ends, is interrupted or fails; `summary`
    says how it ended. Interruptions are raised again once everything is written; a StreamError is kept
    in `summary.failed`; a broken --maps-out pipe ends the run as the end of the stream does."""
    options = predictor.options
    run = StreamRun(outputs, options, summary, config.writers or default_png_writers())
    max_batch = config.max_batch or predictor.trunk_batch
    source = LatestFrames(stream, max_batch) if config.drop_late else numbered(stream)
    info = stream.info
    maps = predictor.stream(run.feed(source), max_batch=max_batch, max_latency=config.max_latency,
                            source_size=(info.height, info.width))
    progress = Progress("predict", total=None, unit="frames")
    begin, raised = time.perf_counter(), None
    try:
        run(maps, progress, (lambda: source.dropped) if config.drop_late else (lambda: 0))
    except (KeyboardInterrupt, StreamError, BrokenPipeError) as error:
        summary.ended = ending(error)
        if isinstance(error, StreamError):
            summary.failed[summary.name] = str(error)
        elif isinstance(error, KeyboardInterrupt):
            raised = error
    finally:
        maps.close()
        if config.drop_late:
            source.close()
            summary.dropped = source.dropped
        stream.close()
        run.finish()
        progress.close()
        summary.seconds = time.perf_counter() - begin
    if raised is not None:
        raise raised


def stream_record(config, predictor, info, summary: StreamSummary, started: str) -> dict:
    """predict.json's record of one stream run (updated as it ends)."""
    return {
        "started": started, "source": str(config.source), "source_kind": "stream", "name": summary.name,
        "stream": {"width": info.width, "height": info.height, "fps": info.fps},
        "device": str(predictor.device), "batch_size": predictor.decoder.batch,
        "max_batch": config.max_batch or predictor.trunk_batch, "max_latency": config.max_latency,
        "drop_late": bool(config.drop_late),
        "resize": ("ffmpeg bilinear to the trunk's input (as predict on a file)"
                   if stream_frame_size(predictor.runner.preprocessing, bool(config.overlay or config.overlay_video))
                   else "full frames, resized as predict_frames does"),
        "overlay": bool(config.overlay), "overlay_video": bool(config.overlay_video),
        "maps_out": config.maps_out, "complete": False,
    }


def finish_record(run: dict, summary: StreamSummary) -> None:
    run.update({"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "complete": True,
                "ended": summary.ended, "frames": summary.frames, "dropped": summary.dropped,
                "seconds": round(summary.seconds, 3), "frames_per_second": round(summary.frames_per_second, 3),
                "latency_p50": None if summary.latency_p50 is None else round(summary.latency_p50, 4),
                "failed": summary.failed})


def check_stream_config(config) -> None:
    """PredictError for what a stream SOURCE cannot do (before anything is opened)."""
    if config.out_dir is None and config.maps_out is None:
        raise PredictError(f"{config.source}: give OUT_DIR (PNG maps) or --maps-out - (raw maps on stdout), or both")
    if config.out_dir is None and (config.overlay or config.overlay_video):
        raise PredictError("--overlay and --overlay-video write into OUT_DIR: give OUT_DIR")
    misplaced = [flag for flag, value in (("--videos", config.videos), ("--cache", config.cache),
                                          ("--max-frames", config.max_frames)) if value]
    if misplaced:
        raise PredictError(f"{', '.join(misplaced)}: for a store, dataset or video file SOURCE, not a stream")
    if config.out_dir is not None and str(config.out_dir) == "-":
        raise PredictError("OUT_DIR '-' is a folder name: for maps on stdout give --maps-out - (OUT_DIR optional)")


def open_outputs(config, name: str) -> tuple[StreamOutputs, dict | None]:
    """The outputs of a stream run and predict.json's record (None without OUT_DIR), the record checked
    against OUT_DIR's settings; a folder OUT_DIR/<name> that holds maps already is refused."""
    from sal3d.stages.predict import _open_checkpoint, _open_record, _settings  # noqa: PLC0415 (predict's own)
    from sal3d.pipeline.identity import file_sha256  # noqa: PLC0415

    style = OverlayStyle(config.overlay_colormap, float(config.overlay_alpha), float(config.overlay_threshold))
    outputs = StreamOutputs(folder=None, style=style)
    if config.out_dir is None:
        return outputs, None
    out_dir = Path(config.out_dir)
    checkpoint, coefficients = _open_checkpoint(Path(config.checkpoint))
    options = PostProcess(config.size, float(config.blur), bool(config.rescale))
    record = _open_record(out_dir, _settings(checkpoint, file_sha256(Path(config.checkpoint)), coefficients, options))
    outputs.folder = out_dir / name
    if outputs.folder.is_dir() and any(outputs.folder.glob("*.png")):
        raise PredictError(f"{outputs.folder} holds the maps of an earlier stream (a stream is not resumed): "
                           "give another --name, or remove that folder")
    outputs.folder.mkdir(parents=True, exist_ok=True)
    if config.overlay:
        outputs.overlay_folder = out_dir / OVERLAY_DIR / name
        outputs.overlay_folder.mkdir(parents=True, exist_ok=True)
    return outputs, record


def predict_stream(config) -> StreamSummary:
    """Run `PredictConfig` `config` on its stream SOURCE (see the module's docstring); returns the summary.
    PredictError / StreamError (and the checkpoint's errors) for what cannot be run at all."""
    from sal3d.api import Predictor  # noqa: PLC0415
    from sal3d.stages.predict import PREDICT_JSON, _write_json  # noqa: PLC0415

    check_stream_config(config)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    summary = StreamSummary(config.name or stream_name(str(config.source)))
    with contextlib.ExitStack() as stack:
        outputs, record = open_outputs(config, summary.name)
        predictor = Predictor(config.checkpoint, weights=config.weights, device=config.device,
                              batch_size=config.batch_size, size=config.size, blur=config.blur, rescale=config.rescale)
        size = stream_frame_size(predictor.runner.preprocessing, bool(config.overlay or config.overlay_video))
        stream = stack.enter_context(open_stream(str(config.source), stall_timeout=config.stall_timeout, size=size))
        info = stream.info
        height, width = predictor.options.output_size(info.height, info.width)
        outputs.maps_out = stack.enter_context(maps_output(config.maps_out))
        say(f"predict: stream {info.source} ({info.width}x{info.height}, "
            f"{'unknown' if info.fps is None else f'{info.fps:g}'} fps) on {predictor.device} -> "
            + ", ".join(([f"{outputs.folder}/"] if outputs.folder else [])
                        + ([f"--maps-out {config.maps_out}"] if config.maps_out else [])))
        if config.maps_out:
            say(f"predict: maps on {config.maps_out}: raw grey, {width}x{height} bytes a frame, {video_fps(info.fps):g} fps "
                f"(ffmpeg -f rawvideo -pix_fmt gray -s {width}x{height} -r {video_fps(info.fps):g} -i - maps.mp4)")
        run = stream_record(config, predictor, info, summary, started)
        if record is not None:
            record["runs"].append(run)
            record["videos"][summary.name] = {"frames": 0, "height": height, "width": width, "stream": True}
            _write_json(Path(config.out_dir) / PREDICT_JSON, record)
        if config.overlay_video:
            outputs.video = OverlayVideoWriter(overlay_video_path(config.out_dir, summary.name), video_fps(info.fps))
            outputs.video.path.parent.mkdir(parents=True, exist_ok=True)
            outputs.video.__enter__()
        try:
            run_stream(predictor, stream, outputs, config, summary)
        finally:
            close_video(outputs.video)
            finish_record(run, summary)
            if record is not None:
                record["videos"][summary.name]["frames"] = summary.frames
                _write_json(Path(config.out_dir) / PREDICT_JSON, record)
            say(summary.line())
            for name, why in summary.failed.items():
                say(f"predict: failed {name}: {why}")
    return summary


def close_video(video: OverlayVideoWriter | None) -> None:
    """Finish the overlay video (playable under its name); one with no frame is not left at all."""
    if video is None:
        return
    if video.frames:
        video.__exit__(None, None, None)
    else:
        video.__exit__(OSError, OSError("no frames"), None)
