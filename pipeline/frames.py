"""Frame sources: decode a video file (decord) or a folder of frame images into 224x224 RGB.

Readers are opened lazily, on first use: a decord VideoReader opened before a fork crashes in the
child (DESIGN.md section 4), so worker processes must each open their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.datasets import VideoEntry
from pipeline.errors import Sal3dError
from pipeline.preprocessing import INPUT_SIZE, resize_image


class FrameReadError(Sal3dError):
    """A video or frame that cannot be decoded; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoInfo:
    """What a source says of itself. fps is recorded only: it is often wrong and never indexes."""

    frame_count: int
    height: int
    width: int
    fps: float | None


class FrameReader:
    """Reads frames of one VideoEntry as uint8 arrays (n, 224, 224, 3), in order, by index."""

    def __init__(self, entry: VideoEntry):
        self.entry = entry
        self._video = None
        self._info: VideoInfo | None = None

    def _open_video(self):
        if self._video is None:
            import decord  # imported here: only workers that decode need it

            path = str(self.entry.source)
            try:
                self._video = decord.VideoReader(path, width=INPUT_SIZE, height=INPUT_SIZE, num_threads=1)
                original = decord.VideoReader(path, num_threads=1)
                height, width = original[0].shape[:2] if len(original) else (0, 0)
                fps = float(original.get_avg_fps())
                del original
            except Exception as error:  # decord raises plain RuntimeError/DECORDError with ffmpeg's text
                raise FrameReadError(f"{path}: cannot decode video ({_first_line(error)})") from None
            self._info = VideoInfo(len(self._video), int(height), int(width), fps)
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
                return video.get_batch(list(range(start, stop))).asnumpy()
            except Exception as error:
                raise FrameReadError(f"{self.entry.source}: cannot decode frames {start}..{stop - 1} "
                                     f"({_first_line(error)})") from None
        return np.stack([resize_image(_open_image(p), "RGB") for p in self.entry.frames[start:stop]])


def read_maps(files: list[Path]) -> np.ndarray:
    """Grey ground-truth map images -> uint8 (n, 224, 224), resized bilinearly."""
    return np.stack([resize_image(_open_image(p), "L") for p in files])


def _open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except Exception as error:
        raise FrameReadError(f"{path}: cannot read image ({_first_line(error)})") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
