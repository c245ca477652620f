"""Writing video files through an ffmpeg binary: imageio-ffmpeg's, else ``ffmpeg`` on PATH.

`VideoEncoder` encodes RGB frames as they come (MPEG-4 part 2 in AVI, as DHF1K's XviD files);
`trim_video` cuts the first frames of a video file without re-encoding.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from sal3d.pipeline.errors import Sal3dError

#: MPEG-4 part 2 at a fixed quantiser, a keyframe every 12 frames (ffmpeg's default for the codec).
QUALITY = 2
KEYFRAME_EVERY = 12
FPS = 30


class FFmpegError(Sal3dError):
    """No ffmpeg binary, or ffmpeg failed; the message says which file and ffmpeg's last words."""


def ffmpeg_exe() -> str | None:
    """imageio-ffmpeg's bundled ffmpeg, else one on PATH, else None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary missing
        return shutil.which("ffmpeg")


def require_ffmpeg(why: str) -> str:
    """The ffmpeg binary, or an FFmpegError that starts with `why` and says how to get one."""
    ffmpeg = ffmpeg_exe()
    if ffmpeg is None:
        raise FFmpegError(f"{why} needs ffmpeg: pip install imageio-ffmpeg (or put ffmpeg on PATH)")
    return ffmpeg


class VideoEncoder:
    """A video file written frame by frame: ``with VideoEncoder(path, w, h) as video: video.write(rgb)``.

    Frames are uint8 (height, width, 3) RGB; the file is MPEG-4 part 2 (yuv420p) at quantiser `quality`,
    tagged `tag` (a FourCC such as ``"XVID"``) when given. Raises FFmpegError with ffmpeg's log if the
    encoder fails."""

    def __init__(self, path: Path | str, width: int, height: int, *, fps: int = FPS, quality: int = QUALITY,
                 tag: str | None = None, ffmpeg: str | None = None):
        self.path = Path(path)
        ffmpeg = ffmpeg or require_ffmpeg(f"writing {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.path.with_name(f".{self.path.name}.ffmpeg.log")
        command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                   f"{width}x{height}", "-r", str(fps), "-i", "-", "-an", "-c:v", "mpeg4"]
        command += ["-vtag", tag] if tag else []
        command += ["-q:v", str(quality), "-g", str(KEYFRAME_EVERY), "-pix_fmt", "yuv420p", str(self.path)]
        self.shape = (height, width, 3)
        with open(self.log, "wb") as err:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=err)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: a frame must be uint8 {self.shape}, got {frame.dtype} {frame.shape}")
        self.process.stdin.write(np.ascontiguousarray(frame).tobytes())

    def close(self) -> None:
        if self.process.stdin.closed:
            return
        try:
            self.process.stdin.close()
        except BrokenPipeError:  # ffmpeg has died: its log says why
            pass
        code = self.process.wait()
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        self.log.unlink(missing_ok=True)
        if code:
            raise FFmpegError(f"ffmpeg failed writing {self.path}: {log[-500:]}")

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def trim_video(source: Path, target: Path, frames: int) -> Path | None:
    """The first `frames` frames of a video file, stream-copied (same bitstream); None without ffmpeg."""
    ffmpeg = ffmpeg_exe()
    if ffmpeg is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", str(source), "-map", "0:v:0", "-frames:v",
                             str(frames), "-c", "copy", str(target)], capture_output=True, text=True)
    if result.returncode:
        raise FFmpegError(f"ffmpeg failed trimming {source}: {result.stderr[-500:]}")
    return target
