"""Frame sources: decode a video file (decord) or a folder of frame images into 224x224 RGB, resized
as the trunk preset's `Preprocessing` says; read ground-truth maps as 8-bit grey.

Readers are opened lazily, on first use: a decord VideoReader opened before a fork crashes in the
child (DESIGN.md section 4), so worker processes must each open their own.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from sal3d.pipeline.containers import declared_seconds
from sal3d.pipeline.datasets import VideoEntry
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.preprocessing import INPUT_SIZE, TORCHVISION, Preprocessing, resize_image


class FrameReadError(Sal3dError):
    """A video or frame that cannot be decoded; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoInfo:
    """What a source says of itself. fps is recorded only: it is often wrong and never indexes.

    frame_count: the frames the decoder finds. expected_frames: set when the container declares a
    duration that those frames fall short of (a truncated file), to about how many frames it would
    hold (`short_of`); None when they cover it, or the container declares nothing readable."""

    frame_count: int
    height: int
    width: int
    fps: float | None
    expected_frames: int | None = None
    declared_seconds: float | None = None
    decoded_seconds: float | None = None


def short_of(frames: int, decoded_seconds: float, declared: float | None) -> int | None:
    """About how many frames a video of `frames` decoded frames, ending at `decoded_seconds`, would
    have if it lasted the `declared` seconds; None when it lasts them (give or take two frames or 2%)."""
    if declared is None or frames < 1 or decoded_seconds <= 0:
        return None
    frame_seconds = decoded_seconds / frames
    if declared - decoded_seconds <= max(2 * frame_seconds, 0.02 * declared):
        return None
    return round(declared / frame_seconds)


class FrameReader:
    """Reads frames of one VideoEntry as uint8 RGB arrays (n, 224, 224, 3), in order, by index.

    preprocessing: the trunk preset's; it says whether decord decodes straight to 224x224 or at full
    size, each frame then resized by `Preprocessing.resize`."""

    def __init__(self, entry: VideoEntry, preprocessing: Preprocessing = TORCHVISION):
        self.entry = entry
        self.preprocessing = preprocessing
        self._video = None
        self._info: VideoInfo | None = None

    def _open_video(self):
        if self._video is None:
            import decord  # imported here: only workers that decode need it

            path, said = str(self.entry.source), []
            try:
                size = {"width": INPUT_SIZE, "height": INPUT_SIZE} if self.preprocessing.decoder_resizes else {}
                # ffmpeg and decord write their reasons to file descriptor 2: into the one message instead
                with decoder_messages(said):
                    self._video = decord.VideoReader(path, **size, num_threads=1)
                    original = decord.VideoReader(path, num_threads=1)
                height, width = original[0].shape[:2] if len(original) else (0, 0)
                fps = float(original.get_avg_fps())
                del original
                count = len(self._video)
                # the end of the last frame, against the container's declared duration (truncated files)
                decoded = float(self._video.get_frame_timestamp(count - 1)[1]) if count else 0.0
            except Exception as error:  # decord raises plain RuntimeError/DECORDError with ffmpeg's text
                raise FrameReadError(f"{path}: cannot decode video ({decoder_reason([*said, str(error)], path)})") from None
            declared = declared_seconds(path)
            self._info = VideoInfo(count, int(height), int(width), fps, short_of(count, decoded, declared),
                                   declared, decoded)
        return self._video

    def info(self) -> VideoInfo:
        """Frame count, original size and claimed fps; raises FrameReadError for an unreadable source."""
        if self._info is None:
            if self.entry.is_video_file:
                self._open_video()
            else:
                first = self.entry.frames[0] if self.entry.frames else None
                if first is None:
                    raise FrameReadError(f"{self.entry.source}: no frame images")
                width, height = _open_image(first).size
                self._info = VideoInfo(len(self.entry.frames), height, width, None)
        if self._info.frame_count == 0:
            raise FrameReadError(f"{self.entry.source}: the video has no frames")
        return self._info

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as uint8 (stop - start, 224, 224, 3)."""
        if self.entry.is_video_file:
            video = self._open_video()
            try:
                frames = video.get_batch(list(range(start, stop))).asnumpy()
            except Exception as error:
                raise FrameReadError(f"{self.entry.source}: cannot decode frames {start}..{stop - 1} "
                                     f"({_first_line(error)})") from None
            return frames if self.preprocessing.decoder_resizes else self.preprocessing.resize_all(frames)
        return np.stack([self.preprocessing.resize(_open_image(p)) for p in self.entry.frames[start:stop]])


def read_maps(files: list[Path | None]) -> np.ndarray:
    """Grey ground-truth map images -> uint8 (n, 224, 224): `read_grey_8bit`, then resized bilinearly.
    None (a frame without a map) gives an all-zero map."""
    empty = np.zeros((INPUT_SIZE, INPUT_SIZE), dtype=np.uint8)
    return np.stack([empty if p is None else resize_image(Image.fromarray(read_grey_8bit(p)), "L") for p in files])


def read_grey_8bit(path: Path | str) -> np.ndarray:
    """A ground-truth map image as uint8 (H, W) at its own size, its full range scaled to 0..255.

    - 8-bit grey (``L``): as stored.
    - 16-bit grey (``I;16*``; ``I``, as older Pillow opens 16-bit PNGs): v -> round(v * 255 / 65535),
      so 65535 is 255 (Pillow's own conversion clips everything above 255 to white instead).
    - float (``F``): values in [0, 1] scaled by 255, larger ones clipped to 0..255.
    - palette (``P``), binary (``1``), with alpha or colour: Pillow's conversion to grey (palette
      entries' luminance; alpha dropped).
    FrameReadError names the file when it cannot be read.
    """
    image = _open_image(Path(path))
    if image.mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I
        values = np.asarray(image).astype(np.int64).clip(0, 65535)
        return ((values * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257): never a tie
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if np.nanmax(values, initial=0.0) <= 1.0:
            values = values * 255.0
        return np.rint(np.nan_to_num(values).clip(0, 255)).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except Exception as error:
        raise FrameReadError(f"{path}: cannot read image ({_first_line(error)})") from None


_CAPTURE_LOCK = threading.Lock()  # file descriptor 2 is the process's: one capture at a time


@contextmanager
def decoder_messages(said: list[str]) -> Iterator[None]:
    """Within: what is written to file descriptor 2 (ffmpeg's and decord's messages, which bypass
    Python) goes to a temporary file; on leaving, its non-empty lines are appended to `said` and file
    descriptor 2 is restored. Where descriptor 2 cannot be redirected, nothing is captured."""
    with _CAPTURE_LOCK, tempfile.TemporaryFile() as capture:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(capture.fileno(), 2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            said += [line.strip() for line in capture.read().decode(errors="replace").splitlines() if line.strip()]


# "[16:24:40] /path/to/video_reader.cc:83: " and "[mov,mp4,m4a @ 0x55d0c] ": where a decoder line comes from
_DECODER_PREFIX = re.compile(r"^(\[\d\d:\d\d:\d\d\]\s+\S+:\d+:\s*|\[[^\]]* @ 0x[0-9a-f]+\]\s*)+")


def decoder_reason(lines: list[str], path: str) -> str:
    """The decoder's own words about `path`, from its `lines` (its messages, then the exception's
    text), in one line: where each comes from and the path itself left out, repeats dropped, at most
    300 characters; the exception's first line when the decoder said nothing else."""
    reasons = []
    for line in lines:
        for part in str(line).splitlines():
            text = _DECODER_PREFIX.sub("", part.strip()).replace(f"{path}, ", "").replace(path, "").strip(" :,.")
            if text.startswith("ERROR opening"):
                text = text[len("ERROR opening"):].strip(" :,")
            if text and not text.startswith("Error reading") and text not in reasons:
                reasons.append(text)
    reason = "; ".join(reasons) or next((str(x).strip().splitlines()[0] for x in lines if str(x).strip()), "")
    return reason[:300] if reason else "unreadable"


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
