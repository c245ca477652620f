"""A small synthetic dataset in the official DHF1K layout, for the demo and the tests.

Each video shows one bright object moving over a dim, static textured background; simulated
observers look at the object. So saliency = the moving object, a task a decoder can learn, with
continuous maps and binary fixation maps that agree (the map is the fixations blurred, as DHF1K's).

    DIR/video/001.AVI ...                      (MPEG-4 part 2 in AVI, like DHF1K's XviD files)
    DIR/annotation/0001/maps/0001.png ...      (continuous, grey, frame size)
    DIR/annotation/0001/fixation/0001.png ...  (255 where a fixation landed)

Video ids follow DHF1K's split: the first `train` videos are 001.., the `val` ones 601...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class SampleSpec:
    train: int = 4
    val: int = 2
    frames: int = 16
    width: int = 160  # multiples of 16: the encoder would otherwise pad the frame
    height: int = 96
    observers: int = 12
    seed: int = 0


def make_sample(directory: Path | str, spec: SampleSpec = SampleSpec()) -> list[str]:
    """Write the sample dataset under `directory`; returns the video ids (annotation folder names)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise RuntimeError("make-sample encodes video with imageio-ffmpeg: pip install 'sal3d[sample]'") from None
    directory = Path(directory)
    (directory / "video").mkdir(parents=True, exist_ok=True)
    numbers = list(range(1, spec.train + 1)) + list(range(601, 601 + spec.val))
    rng = np.random.default_rng(spec.seed)
    for number in numbers:
        frames, maps, fixations = _render_video(rng, spec)
        annotation = directory / "annotation" / f"{number:04d}"
        for sub, images in (("maps", maps), ("fixation", fixations)):
            (annotation / sub).mkdir(parents=True, exist_ok=True)
            for t, image in enumerate(images):
                Image.fromarray(image).save(annotation / sub / f"{t + 1:04d}.png")
        writer = imageio_ffmpeg.write_frames(
            str(directory / "video" / f"{number:03d}.AVI"), (spec.width, spec.height), fps=30,
            codec="mpeg4", output_params=["-q:v", "2"], macro_block_size=16, ffmpeg_log_level="error")
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    return [f"{n:04d}" for n in numbers]


def _render_video(rng: np.random.Generator, spec: SampleSpec):
    h, w = spec.height, spec.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Dim, smooth, static texture: something for the trunk to see that is not salient.
    noise = rng.normal(size=(h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    texture = np.asarray(Image.fromarray(((noise - noise.min()) / np.ptp(noise) * 255).astype(np.uint8))
                         .resize((w, h), Image.BICUBIC), dtype=np.float32)
    background = 30 + 0.25 * texture
    radius = rng.uniform(0.08, 0.12) * h
    color = np.array([255, rng.uniform(160, 255), rng.uniform(0, 80)], dtype=np.float32)[rng.permutation(3)]
    position = np.array([rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)])
    velocity = rng.uniform(2.0, 5.0, size=2) * rng.choice([-1, 1], size=2)
    frames, maps, fixations = [], [], []
    for _ in range(spec.frames):
        for axis, limit in ((0, h), (1, w)):  # bounce off the borders
            if not radius <= position[axis] + velocity[axis] <= limit - radius:
                velocity[axis] = -velocity[axis]
        position = position + velocity
        inside = (yy - position[0]) ** 2 + (xx - position[1]) ** 2 <= radius ** 2
        frame = background.copy()
        frame[inside] = color
        frames.append(frame.clip(0, 255).astype(np.uint8))
        gaze = rng.normal(position, radius * 0.6, size=(spec.observers, 2))
        gaze = np.clip(np.rint(gaze), 0, [h - 1, w - 1]).astype(int)
        fixation = np.zeros((h, w), np.uint8)
        fixation[gaze[:, 0], gaze[:, 1]] = 255
        fixations.append(fixation)
        maps.append(_blur_fixations(gaze, h, w, sigma=radius))
    return frames, maps, fixations


def _blur_fixations(points: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    """Continuous map: a Gaussian at each fixation, summed, scaled to a peak of 255."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    total = np.zeros((h, w), np.float32)
    for y, x in points:
        total += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2))
    return (255 * total / total.max()).astype(np.uint8)
