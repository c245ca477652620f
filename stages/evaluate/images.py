"""Reading the PNGs of an evaluation as the benchmark's code reads them: predictions
(``double(imread(...))``, first channel), ground-truth maps, fixation maps as points.

Every reader raises `EvaluateError` naming the file it cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sal3d.stages.evaluate.config import EvaluateError

#: One video's fixation points (see `read_fixations`): (flat indices, offsets, shapes).
FixationPoints = tuple[np.ndarray, np.ndarray, np.ndarray]


def read_grey(path: Path) -> np.ndarray:
    """A grey image as a 2-D array (uint8, or uint16/int32/float32 for deeper PNGs); colour -> 'L'."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "1", "I;16", "I", "F"):
                image = image.convert("L")
            return np.asarray(image)
    except OSError as error:
        raise EvaluateError(f"{path}: cannot read image ({error})") from None


def read_prediction(path: Path) -> np.ndarray:
    """A prediction as the benchmark reads it: ``double(imread(path))``, first channel; 2-D array.

    Grey PNGs (8 or 16 bit) are read as they are; colour ones give their first (red) channel, as
    ``result(:,:,1)`` in ``evaluationFunc.m``; palette images are expanded to RGB first.
    """
    try:
        with Image.open(path) as image:
            if image.mode == "P":
                image = image.convert("RGB")
            if len(image.getbands()) > 1:
                image = image.getchannel(0)
            return np.asarray(image)
    except OSError as error:
        raise EvaluateError(f"{path}: cannot read image ({error})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except OSError as error:
        raise EvaluateError(f"{path}: cannot read image ({error})") from None


def read_fixations(files: list[Path | None]) -> FixationPoints:
    """Fixation points of one video's n fixation maps (None = no file): (flat indices int32, offsets
    int64 (n+1), shapes int32 (n, 2)); frame i's points are ``flat[offsets[i]:offsets[i + 1]]``,
    row-major indices into its ``shapes[i]`` map, which is (0, 0) without a file."""
    flats, offsets, shapes = [], [0], []
    for path in files:
        if path is None:
            flats.append(np.empty(0, np.int32))
            shapes.append((0, 0))
        else:
            fixation = read_grey(path)
            flats.append(np.flatnonzero(fixation != 0).astype(np.int32))  # nonzero on bool: ~10x faster
            shapes.append(fixation.shape)
        offsets.append(offsets[-1] + flats[-1].size)
    flat = np.concatenate(flats) if flats else np.empty(0, np.int32)
    return flat, np.asarray(offsets, np.int64), np.asarray(shapes, np.int32).reshape(-1, 2)
