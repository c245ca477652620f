"""Reading the files of an evaluation as the benchmark's code reads them: predictions
(``double(imread(...))``, first channel; a palette PNG's indices), ground-truth maps, fixation maps
as points (PNGs, or the benchmark's ``fixation/maps/<frame>.mat`` holding ``I``).

Every reader raises `EvaluateError` naming the file it cannot read."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sal3d.pipeline.png_grey import decode_grey_png
from sal3d.stages.evaluate.config import EvaluateError

#: One video's fixation points (see `read_fixations`): (flat indices, offsets, shapes).
FixationPoints = tuple[np.ndarray, np.ndarray, np.ndarray]


def _file_bytes(path: Path) -> bytes:
    """The bytes of an image file; EvaluateError naming it when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise EvaluateError(f"{path}: cannot read image ({error.strerror or error})") from None


def _unreadable(path: Path, error: OSError) -> EvaluateError:
    """The error for an image file Pillow cannot read (its own words name a buffer, not the file)."""
    reason = "not an image file Pillow can identify" if isinstance(error, UnidentifiedImageError) else error
    return EvaluateError(f"{path}: cannot read image ({reason})")


def read_grey(path: Path) -> np.ndarray:
    """A grey image as a 2-D array (uint8, or uint16/int32/float32 for deeper PNGs); colour -> 'L'.
    8-bit grey PNGs go through `pipeline.png_grey` (the same pixels, several times faster)."""
    data = _file_bytes(path)
    fast = decode_grey_png(data)
    if fast is not None:
        return fast
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("L", "1", "I;16", "I", "F"):
                image = image.convert("L")
            return np.asarray(image)
    except OSError as error:
        raise _unreadable(path, error) from None


def read_prediction(path: Path) -> np.ndarray:
    """A prediction as the benchmark reads it: ``double(imread(path))``, first channel; 2-D array.

    Grey PNGs (8 or 16 bit) are read as they are; colour ones give their first (red) channel, as
    ``result(:,:,1)`` in ``evaluationFunc.m``; palette (indexed) images give their palette indices,
    not the colours, as MATLAB's ``imread`` returns an indexed image's index array. 8-bit grey PNGs
    go through `pipeline.png_grey`.
    """
    data = _file_bytes(path)
    fast = decode_grey_png(data)
    if fast is not None:
        return fast
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode == "P":  # PIL reads every indexed PNG (transparency included) as "P"
                return np.asarray(image)
            if len(image.getbands()) > 1:
                image = image.getchannel(0)
            return np.asarray(image)
    except OSError as error:
        raise _unreadable(path, error) from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except OSError as error:
        raise EvaluateError(f"{path}: cannot read image ({error})") from None


def ground_truth_size(map_path: Path | None, fixation_path: Path | None) -> tuple[int, int]:
    """(height, width) of a frame's ground truth: its map's PNG header, else its fixation map's (a
    ``.mat`` file is read whole)."""
    if map_path is None and fixation_path is not None and fixation_path.suffix.lower() == ".mat":
        return read_fixation_mat(fixation_path).shape
    return image_size(map_path if map_path is not None else fixation_path)


def read_fixation_mat(path: Path) -> np.ndarray:
    """The benchmark's fixation file ``fixation/maps/<frame>.mat``: its variable ``I`` (H, W) as a
    bool array, True where ``I > 0`` (as ``evaluationFunc.m``'s ``I = I>0``). Raises EvaluateError
    naming the file when it cannot be read or holds no 2-D ``I``."""
    from scipy.io import loadmat  # deferred: only .mat fixations need scipy
    from scipy.io.matlab import MatReadError
    from scipy.sparse import issparse

    try:
        with open(path, "rb") as handle:
            if b"MATLAB 7.3" in handle.read(128):  # HDF5-based: loadmat cannot read it
                raise EvaluateError(f"{path}: a MATLAB v7.3 (HDF5) file, which cannot be read here; save the "
                                    "fixation map I with save(..., '-v7')")
        variables = loadmat(path, variable_names=["I"])
    except (MatReadError, ValueError, TypeError, NotImplementedError, EOFError, zlib.error, OSError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise EvaluateError(f"{path}: cannot read this fixation file as a MATLAB .mat file ({reason})") from None
    if "I" not in variables:
        raise EvaluateError(f"{path}: no variable I (the fixation map evaluationFunc.m loads) in this .mat file")
    fixations = variables["I"]
    fixations = fixations.toarray() if issparse(fixations) else np.asarray(fixations)
    if fixations.ndim != 2 or fixations.dtype.kind not in "biuf":
        raise EvaluateError(f"{path}: variable I is not a 2-D numeric map (shape {fixations.shape}, "
                            f"{fixations.dtype})")
    return fixations > 0


def join_fixations(parts: list[FixationPoints]) -> FixationPoints:
    """The points of consecutive runs of frames (`read_fixations` of each, in frame order) as one."""
    if len(parts) == 1:
        return parts[0]
    bases = np.cumsum([0] + [flat.size for flat, _, _ in parts[:-1]])
    offsets = np.concatenate([offsets[:-1] + base for (_, offsets, _), base in zip(parts, bases)]
                             + [[bases[-1] + parts[-1][0].size]])
    return (np.concatenate([flat for flat, _, _ in parts]), offsets.astype(np.int64),
            np.concatenate([shapes for _, _, shapes in parts]))


def read_fixations(files: list[Path | None]) -> FixationPoints:
    """Fixation points of one video's n fixation maps (None = no file): (flat indices int32, offsets
    int64 (n+1), shapes int32 (n, 2)); frame i's points are ``flat[offsets[i]:offsets[i + 1]]``,
    row-major indices into its ``shapes[i]`` map, which is (0, 0) without a file. A map is a PNG
    (nonzero pixels are fixations) or a ``.mat`` file (`read_fixation_mat`)."""
    flats, offsets, shapes = [], [0], []
    for path in files:
        if path is None:
            flats.append(np.empty(0, np.int32))
            shapes.append((0, 0))
        else:
            fixation = read_fixation_mat(path) if path.suffix.lower() == ".mat" else read_grey(path)
            flats.append(np.flatnonzero(fixation != 0).astype(np.int32))  # nonzero on bool: ~10x faster
            shapes.append(fixation.shape)
        offsets.append(offsets[-1] + flats[-1].size)
    flat = np.concatenate(flats) if flats else np.empty(0, np.int32)
    return flat, np.asarray(offsets, np.int64), np.asarray(shapes, np.int32).reshape(-1, 2)
