"""Saliency maps drawn over their frames: colour maps, the overlay blend, the source frames at their
original size, and the overlay video.

The blend (`overlay`), per pixel, with s = map / 255, b = the map's median (its background level)
and the style's threshold t, alpha and colour map::

    v = clip((s - b - t (1 - b)) / ((1 - b) (1 - t)), 0, 1)    0 up to t of the way from b to the peak
    a = alpha * sqrt(v)                                          the opacity
    out = frame * (1 - a) + colormap(0.3 + 0.7 v) * a

- The frame shows unchanged wherever the map is at most t of the way from its background to its
  peak. The background is measured, not assumed to be 0: maps are min-max rescaled by default
  (`pipeline.postprocess`), which lifts an early model's flat background to a grey of its own
  (60-100 of 255 is common), and a fixed threshold below that grey would tint the whole frame. Most
  of a saliency map is background, so its median is that grey.
- The square root makes the map's shoulders visible, not only its peaks; alpha caps the opacity at
  the peak, so the frame is never hidden.
- The colour maps' darkest 30% is left out: over a frame it reads as a shadow, not as a colour.
  The default, ``inferno``, is perceptually uniform (equal steps of saliency look like equal steps
  of colour) and brightest where the map is highest.

The overlay video (`OverlayVideoWriter`) is an MP4: H.264 through the ffmpeg binary that
imageio-ffmpeg ships (MPEG-4 part 2 when that ffmpeg has no H.264 encoder), yuv420p so that browsers
and common players show it, written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import functools
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sal3d.pipeline.atomic import atomic_write, is_temporary, temporary_name, write_error
from sal3d.pipeline.datasets import image_files
from sal3d.pipeline.errors import Sal3dError

# 33 evenly spaced entries (round(k * 255 / 32): 0, 8, 16, ..., 255) of matplotlib's 256-entry tables, interpolated linearly
# between them (at most 3 / 255 from matplotlib's colours): no matplotlib needed.
_ANCHORS = {
    "inferno": "000004 040312 0b0724 150b37 210c4a 2f0a5b 3d0965 4a0c6b 57106e 64156e 71196e 7d1e6d 8a226a "
               "972766 a32c61 b0315b bc3754 c63d4d d04545 da4e3c e35933 eb6429 f1711f f67e14 f98c0a fb9b06 "
               "fcaa0f fbba1f f9c932 f5d949 f2e865 f3f586 fcffa4",
    "viridis": "440154 470d60 48186a 482374 472d7b 453781 424086 3e4989 3b528b 375b8d 33638d 2f6b8e 2c728e "
               "297a8e 26828e 23898e 21918c 1f978b 1f9f88 21a685 27ad81 31b57b 3dbc74 4cc26c 5cc863 6ece58 "
               "81d34d 95d840 aadc32 c0df25 d5e21a eae51a fde725",
    "turbo": "30123b 392a73 4040a2 4456c7 466be3 4680f6 4294ff 37a8fa 28bceb 1ccdd8 18ddc2 1fe9af 32f298 "
             "4ef97d 6dfe62 8bff4b a4fc3c b7f735 cbed34 dde037 ecd13a f7c13a fdae35 fe992c fb8122 f56918 "
             "ec530f e14109 d23105 c12302 ac1701 950d01 7a0403",
}
#: Colour maps by name: inferno and viridis (perceptually uniform), turbo (a smoother rainbow) and jet,
#: the piecewise-linear rainbow of most published saliency figures (not perceptually uniform: its cyan
#: and yellow bands look like edges that are not in the map).
COLORMAPS = ("inferno", "viridis", "turbo", "jet")
DEFAULT_COLORMAP = "inferno"
#: Opacity of the colour at the map's peak.
DEFAULT_ALPHA = 0.7
#: How far from the map's background level (its median) to its peak the frame still shows unchanged.
DEFAULT_THRESHOLD = 0.2
#: Where on the colour map the overlay's colours start (its darker part reads as a shadow over a frame).
COLOR_START = 0.3
#: Frame rate of an overlay video whose source has none, or an implausible one.
DEFAULT_FPS = 30.0
SANE_FPS = (1.0, 240.0)


class OverlayError(Sal3dError):
    """An overlay that cannot be drawn or encoded; the message names the file."""


@dataclass(frozen=True)
class OverlayStyle:
    """How a map is drawn over its frame (see the module docstring)."""

    colormap: str = DEFAULT_COLORMAP
    alpha: float = DEFAULT_ALPHA
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self):
        if self.colormap not in COLORMAPS:
            raise ValueError(f"colormap must be one of {', '.join(COLORMAPS)}, got {self.colormap!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"overlay alpha must be in [0, 1], got {self.alpha!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"overlay threshold must be in [0, 1), got {self.threshold!r}")

    def record(self) -> dict:
        """What predict.json records about the overlays."""
        return {"colormap": self.colormap, "alpha": self.alpha, "threshold": self.threshold,
                "blend": "s = map/255, b = median(s); v = clip((s - b - threshold (1 - b)) / ((1 - b) "
                         f"(1 - threshold)), 0, 1); a = alpha sqrt(v); out = frame (1 - a) + colormap({COLOR_START} "
                         f"+ {1 - COLOR_START:g} v) a"}


@functools.cache
def colormap_table(name: str) -> np.ndarray:
    """The colour map `name` as uint8 (256, 3) RGB, entry i for the value i / 255."""
    if name == "jet":  # the classic piecewise-linear definition
        x = np.linspace(0.0, 1.0, 256, dtype=np.float64)[:, None]
        table = np.clip(1.5 - np.abs(4.0 * (x - np.array([0.75, 0.5, 0.25]))), 0.0, 1.0) * 255.0
    elif name in _ANCHORS:
        anchors = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in _ANCHORS[name].split()], np.float64)
        at = np.round(np.linspace(0, 255, len(anchors)))  # the table entries they were taken from
        table = np.stack([np.interp(np.arange(256), at, anchors[:, c]) for c in range(3)], axis=1)
    else:
        raise ValueError(f"colormap must be one of {', '.join(COLORMAPS)}, got {name!r}")
    table = np.rint(table).astype(np.uint8)
    table.flags.writeable = False
    return table


def colorize(saliency: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """uint8 (H, W) -> uint8 (H, W, 3): the map through the colour map (0 -> its first colour)."""
    return colormap_table(colormap)[saliency]


def background_level(saliency: np.ndarray) -> float:
    """The median of a uint8 map, over 255 (its background level: most of a map is background)."""
    counts = np.cumsum(np.bincount(saliency.ravel(), minlength=256))
    return float(np.searchsorted(counts, (counts[-1] + 1) // 2)) / 255.0


def blend_tables(style: OverlayStyle, background: float) -> tuple[np.ndarray, np.ndarray]:
    """Per grey level of a map whose background level is `background`: (a, colour x a) as float32
    (256, 1) and (256, 3) -- the blend of the module docstring as lookup tables."""
    s = np.arange(256, dtype=np.float64) / 255.0
    span = (1.0 - background) * (1.0 - style.threshold)
    if span <= 1e-9:  # a map at its peak everywhere says nothing: the frame is left as it is
        v = np.zeros_like(s)
    else:
        v = np.clip((s - background - style.threshold * (1.0 - background)) / span, 0.0, 1.0)
    colours = colormap_table(style.colormap)[np.rint((COLOR_START + (1.0 - COLOR_START) * v) * 255.0).astype(np.int64)]
    a = style.alpha * np.sqrt(v)
    return a[:, None].astype(np.float32), (colours.astype(np.float64) * a[:, None]).astype(np.float32)


def resize_map(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (h, w) -> uint8 (height, width), bilinear (PIL)."""
    if saliency.shape == (height, width):
        return saliency
    return np.asarray(Image.fromarray(saliency).resize((width, height), Image.BILINEAR))


def overlay(frame: np.ndarray, saliency: np.ndarray, style: OverlayStyle = OverlayStyle()) -> np.ndarray:
    """The map `saliency` (uint8 (h, w)) drawn over `frame` (uint8 (H, W, 3)) -> uint8 (H, W, 3), as the
    module docstring says. A map of another size than the frame (``--size 224``) is resized to the
    frame (bilinear) first."""
    if frame.ndim != 3 or frame.shape[2] != 3 or saliency.ndim != 2:
        raise ValueError(f"overlay needs an (H, W, 3) frame and an (H, W) map, got {frame.shape} and {saliency.shape}")
    saliency = resize_map(saliency, *frame.shape[:2])
    a, colour = blend_tables(style, background_level(saliency))
    out = frame.astype(np.float32) * (1.0 - a[saliency]) + colour[saliency]
    return (out + 0.5).astype(np.uint8)


class OriginalFrames:
    """Frames of one source (a video file or a folder of frame images) at their original size, uint8
    RGB (H, W, 3) -- unlike `pipeline.frames.FrameReader`, which gives the trunk's 224x224."""

    def __init__(self, source: Path):
        self.source = Path(source)
        self._video = None
        self._files = None

    def read(self, indices: list[int]) -> list[np.ndarray]:
        """The frames at `indices` (0-based), in the order asked."""
        if self.source.is_dir():
            if self._files is None:
                self._files = image_files(self.source)
            images = []
            for i in indices:
                with Image.open(self._files[i]) as image:
                    images.append(np.asarray(image.convert("RGB")))
            return images
        if self._video is None:
            import decord  # noqa: PLC0415 (loaded only when a video file is read)

            self._video = decord.VideoReader(str(self.source), num_threads=1)
        return list(self._video.get_batch(list(indices)).asnumpy())

    def fps(self) -> float | None:
        """The source's frame rate, when it is a video file."""
        if self.source.is_dir():
            return None
        if self._video is None:
            self.read([0])
        return float(self._video.get_avg_fps())


def video_fps(fps: float | None) -> float:
    """The overlay video's frame rate: the source's when it is sane (SANE_FPS), else DEFAULT_FPS."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        return DEFAULT_FPS
    return fps if math.isfinite(fps) and SANE_FPS[0] <= fps <= SANE_FPS[1] else DEFAULT_FPS


def remove_temporaries(folder: Path) -> None:
    """Remove what a killed run left half-written in `folder` (see pipeline.atomic)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if is_temporary(path.name):
                path.unlink(missing_ok=True)


@functools.lru_cache(maxsize=1)
def video_codec() -> str:
    """The encoder of overlay videos: libx264 (H.264) when imageio-ffmpeg's ffmpeg has it, else mpeg4
    (MPEG-4 part 2, in every ffmpeg build)."""
    import imageio_ffmpeg  # noqa: PLC0415

    listing = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True,
                             text=True, timeout=60).stdout
    return "libx264" if any(line.split()[1:2] == ["libx264"] for line in listing.splitlines()) else "mpeg4"


#: Encoder settings: close enough to lossless to judge a map over the frame, small files.
_CODEC_PARAMS = {"libx264": ["-crf", "20", "-preset", "fast"], "mpeg4": ["-q:v", "3"]}


class OverlayVideoWriter:
    """Encodes RGB frames (uint8 (H, W, 3), all of the first frame's size) into the MP4 at `path`.

    Use as a context manager: on a clean exit the video is complete under its name; on an error
    nothing is left under it, nor under its temporary name (`pipeline.atomic.atomic_write`). An
    OSError of the writing itself (ffmpeg gone, the rename) is a `WriteError` naming the video; an
    error of the with-body passes through as it is. Odd sizes are padded by one edge row or column
    (yuv420p needs even ones)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = Path(path), float(fps)
        self.frames = 0
        self.codec: str | None = None
        self._temporary = temporary_name(self.path)
        self._writer = None
        self._size: tuple[int, int] | None = None  # (height, width) of the frames given

    def __enter__(self) -> "OverlayVideoWriter":
        try:
            import imageio_ffmpeg  # noqa: F401, PLC0415
        except ImportError:
            raise OverlayError(f"{self.path}: writing an overlay video needs imageio-ffmpeg "
                               "(pip install 'sal3d[video]')") from None
        return self

    def _start(self, height: int, width: int) -> None:
        import imageio_ffmpeg  # noqa: PLC0415

        self._size = (height, width)
        self.codec = video_codec()
        self._writer = imageio_ffmpeg.write_frames(
            str(self._temporary), (width + width % 2, height + height % 2), fps=self.fps, codec=self.codec,
            quality=None, macro_block_size=2, ffmpeg_log_level="error",
            # -f: the temporary name has no .mp4 to tell ffmpeg the container; faststart: a browser plays
            # the file before it has all arrived
            output_params=[*_CODEC_PARAMS.get(self.codec, []), "-movflags", "+faststart", "-f", "mp4"])
        self._writer.send(None)

    def write(self, frame: np.ndarray) -> None:
        """Append one frame; a frame of another size than the first is resized to it (bilinear)."""
        if self._writer is None:
            self._start(*frame.shape[:2])
        height, width = self._size
        if frame.shape[:2] != (height, width):
            frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
        if height % 2 or width % 2:
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        try:
            self._writer.send(np.ascontiguousarray(frame))
        except OSError as error:  # ffmpeg stopped taking frames (a full disk, a killed ffmpeg)
            raise write_error(self.path, error) from None
        self.frames += 1

    def __exit__(self, kind, error, traceback) -> None:
        writer, self._writer = self._writer, None
        if error is not None:
            # The with-body failed or was interrupted: its own error is the one reported (a source frame
            # that cannot be read is not a write error of this file); the half-written video goes.
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # ffmpeg complaining about the cut-off stream adds nothing to the error
                    pass
            self._temporary.unlink(missing_ok=True)
            return
        # ffmpeg has been writing to temporary_name(path), the name atomic_write renames from: the file
        # takes its name only once ffmpeg has finished it, and any failure here removes it.
        with atomic_write(self.path):
            if writer is not None:
                try:
                    writer.close()  # waits for ffmpeg to finish the file
                except Exception as closing:
                    raise OverlayError(f"{self.path}: ffmpeg failed: {closing}") from None
            if not self.frames:
                raise OverlayError(f"{self.path}: no frames to write")


def write_overlay_video(path: Path, frames: OriginalFrames, maps, count: int, fps: float,
                        style: OverlayStyle = OverlayStyle(), on_frames=None, chunk: int = 16) -> str:
    """Write the overlay video of one video: `count` frames of `frames` (from the first), each with the
    map `maps(indices)` returns for them (uint8 (h, w) each), at `fps`. `on_frames(n)` is called after
    each chunk of n frames. Returns the codec used."""
    with OverlayVideoWriter(path, fps) as video:
        for start in range(0, count, chunk):
            indices = list(range(start, min(start + chunk, count)))
            for frame, saliency in zip(frames.read(indices), maps(indices)):
                video.write(overlay(frame, saliency, style))
            if on_frames is not None:
                on_frames(len(indices))
    return video.codec
