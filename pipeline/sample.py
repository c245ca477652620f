"""Synthetic datasets in the official DHF1K layout: one bright disc bouncing over a textured background.

Saliency is the moving disc, a task a decoder can learn. Two datasets come from the one generator
(`render_video`):

- the sample (`make_sample`), for the demo and the tests: small frames, a dim static background,
  simulated observers whose fixations, blurred, make the continuous map (as DHF1K's maps are made);
- the clips (`make_clips`), for speed measurements (`sal3d bench`, benchmarks/): DHF1K's 640x360, a
  brighter background that pans (so the encoder works as on real footage), the map a Gaussian on the
  disc, no fixation maps.

    DIR/video/001.AVI ...                      (MPEG-4 part 2 in AVI, like DHF1K's XviD files)
    DIR/annotation/0001/maps/0001.png ...      (continuous, grey, frame size)
    DIR/annotation/0001/fixation/0001.png ...  (sample only: 255 where a fixation landed)

Video ids follow DHF1K's split: the sample's first `train` videos are 001.., the `val` ones 601...;
the clips are 001.. (train).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sal3d.pipeline.device import usable_cpus
from sal3d.pipeline.ffmpeg import FFmpegError, VideoEncoder, ffmpeg_exe, require_ffmpeg

#: The clips' frame size (DHF1K's) and how far their background pans, in pixels.
CLIP_WIDTH, CLIP_HEIGHT = 640, 360
CLIP_PAN = 48


@dataclass(frozen=True)
class SampleSpec:
    train: int = 4
    val: int = 2
    frames: int = 16
    width: int = 160  # multiples of 16: MPEG-4 codes 16x16 macroblocks
    height: int = 96
    observers: int = 12
    seed: int = 0


def make_sample(directory: Path | str, spec: SampleSpec = SampleSpec()) -> list[str]:
    """Write the sample dataset under `directory`; returns the video ids (annotation folder names)."""
    ffmpeg = ffmpeg_exe()
    if ffmpeg is None:
        raise FFmpegError("make-sample encodes video with ffmpeg: pip install 'sal3d[sample]' (imageio-ffmpeg)")
    directory = Path(directory)
    (directory / "video").mkdir(parents=True, exist_ok=True)
    numbers = list(range(1, spec.train + 1)) + list(range(601, 601 + spec.val))
    rng = np.random.default_rng(spec.seed)  # one generator for all the videos, in order
    for number in numbers:
        annotation = directory / "annotation" / f"{number:04d}"
        for sub in ("maps", "fixation"):
            (annotation / sub).mkdir(parents=True, exist_ok=True)
        with VideoEncoder(directory / "video" / f"{number:03d}.AVI", spec.width, spec.height,
                          ffmpeg=ffmpeg) as video:
            for t, (frame, saliency, fixations) in enumerate(
                    render_video(rng, spec.width, spec.height, spec.frames, observers=spec.observers)):
                video.write(frame)
                Image.fromarray(saliency).save(annotation / "maps" / f"{t + 1:04d}.png")
                Image.fromarray(fixations).save(annotation / "fixation" / f"{t + 1:04d}.png")
    return [f"{n:04d}" for n in numbers]


def make_clips(directory: Path | str, videos: int, frames: int, width: int = CLIP_WIDTH,
               height: int = CLIP_HEIGHT, seed: int = 0) -> list[str]:
    """Write `videos` clips of `frames` frames under `directory` (DHF1K layout, XVID tag, maps only);
    returns the video ids. Each clip has its own generator (`seed`, its index), so they are written in
    parallel threads, one per CPU."""
    directory = Path(directory)
    ffmpeg = require_ffmpeg("writing the clips")
    (directory / "video").mkdir(parents=True, exist_ok=True)

    def one(k: int) -> str:
        video_id = f"{k + 1:04d}"
        maps = directory / "annotation" / video_id / "maps"
        maps.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, k])
        with VideoEncoder(directory / "video" / f"{k + 1:03d}.AVI", width, height, tag="XVID",
                          ffmpeg=ffmpeg) as video:
            for t, (frame, saliency, _) in enumerate(
                    render_video(rng, width, height, frames, texture=scene_texture, pan=CLIP_PAN)):
                video.write(frame)
                Image.fromarray(saliency).save(maps / f"{t + 1:04d}.png", compress_level=1)
        return video_id

    with ThreadPoolExecutor(max_workers=max(1, min(videos, usable_cpus()))) as pool:
        return list(pool.map(one, range(videos)))


# ============================================================================ the generator


def dim_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Dim, smooth texture (uint8 RGB): something for the trunk to see that is not salient."""
    noise = rng.normal(size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    texture = np.asarray(Image.fromarray(((noise - noise.min()) / np.ptp(noise) * 255).astype(np.uint8))
                         .resize((width, height), Image.BICUBIC), dtype=np.float32)
    return (30 + 0.25 * texture).astype(np.uint8)


def scene_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A brighter texture (uint8 RGB) with coarse blotches and fine grain, as detailed as real footage."""
    coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    fine = rng.integers(0, 256, (height // 2 + 1, width // 2 + 1, 3), dtype=np.uint8)
    canvas = (0.6 * np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
              + 0.4 * np.asarray(Image.fromarray(fine).resize((width, height), Image.BILINEAR), np.float32))
    return (20 + 0.7 * canvas).clip(0, 255).astype(np.uint8)


def render_video(rng: np.random.Generator, width: int, height: int, frames: int, *, observers: int = 0,
                 texture: Callable[[np.random.Generator, int, int], np.ndarray] = dim_texture,
                 pan: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """One video, frame by frame: (frame uint8 (height, width, 3), continuous map uint8 (height, width),
    fixation map uint8 (height, width) or None).

    A disc of random size and colour bounces off the borders over `texture`, which pans by up to `pan`
    pixels. With `observers`, each frame's observers look near the disc: their fixations make the
    fixation map, and blurred, the continuous map; without, the map is a Gaussian on the disc.
    Draws from `rng` in order (the texture, the disc, then each frame's fixations) as it is iterated."""
    canvas = texture(rng, height + 2 * pan, width + 2 * pan)
    radius = rng.uniform(0.08, 0.12) * height
    color = np.array([255, rng.uniform(160, 255), rng.uniform(0, 80)], dtype=np.float32)[rng.permutation(3)]
    color = color.astype(np.uint8)
    position = np.array([rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)])
    velocity = rng.uniform(2.0, 5.0, size=2) * rng.choice([-1, 1], size=2)
    ys, xs = np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32)
    for t in range(frames):
        for axis, limit in ((0, height), (1, width)):  # bounce off the borders
            if not radius <= position[axis] + velocity[axis] <= limit - radius:
                velocity[axis] = -velocity[axis]
        position = position + velocity
        oy = int(pan + pan * math.sin(2 * math.pi * t / 97))
        ox = int(pan + pan * math.cos(2 * math.pi * t / 131))
        frame = canvas[oy:oy + height, ox:ox + width].copy()
        y0, y1 = int(max(0, position[0] - radius)), int(min(height, position[0] + radius + 1))
        x0, x1 = int(max(0, position[1] - radius)), int(min(width, position[1] + radius + 1))
        inside = (ys[y0:y1, None] - position[0]) ** 2 + (xs[None, x0:x1] - position[1]) ** 2 <= radius ** 2
        frame[y0:y1, x0:x1][inside] = color
        if observers:
            gaze = rng.normal(position, radius * 0.6, size=(observers, 2))
            gaze = np.clip(np.rint(gaze), 0, [height - 1, width - 1]).astype(int)
            fixations = np.zeros((height, width), np.uint8)
            fixations[gaze[:, 0], gaze[:, 1]] = 255
            yield frame, blur_fixations(gaze, height, width, sigma=radius), fixations
        else:
            gy = np.exp(-((ys - position[0]) ** 2) / (2 * radius ** 2))
            gx = np.exp(-((xs - position[1]) ** 2) / (2 * radius ** 2))
            yield frame, (255 * np.outer(gy, gx)).astype(np.uint8), None


def blur_fixations(points: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    """Continuous map: a Gaussian at each fixation, summed, scaled to a peak of 255."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    total = np.zeros((h, w), np.float32)
    for y, x in points:
        total += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2))
    return (255 * total / total.max()).astype(np.uint8)
