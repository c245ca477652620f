"""The window and weighting rule of 3DSAL -- the one place that owns it (DESIGN.md section 1).

Training and prediction both cut windows and weight them with the functions here.

Window rules (:data:`WINDOW_RULES`; a checkpoint records its own, ``sal3d`` when it records none)
    ``sal3d`` (what sal3d trains with): frame ``t``'s window is frames ``t-5 .. t``, oldest first; at
    the start of a video the first frame is repeated to fill it (``t=0 -> [0]*6``,
    ``t=2 -> [0,0,0,0,1,2]``, ``t=7 -> [2..7]``), and every window is weighted alike.
    ``authors`` (the authors' ``Batch_Creation``, which made the published model's inputs): the
    first five frames have their own index rows (:data:`AUTHORS_START`: ``t=1 -> [0,0,1,1,1,1]``,
    ...), and frames ``0 .. 5`` are not weighted (coefficients 1); from ``t=6`` on, frames
    ``t-5 .. t`` weighted like the ``sal3d`` rule's windows.
    Both are causal: nothing after ``t`` is used, so every frame of every video -- including videos
    shorter than six frames -- gets a window. Frame ``t`` needs the frames ``max(0, t-5) .. t`` and
    nothing else (:func:`frames_needed`).

Layouts
    The feature store holds, per video, features of shape ``(T, 512, 14, 14)`` (frame-major). A
    window cut from it is ``(6, 512, 14, 14)`` per sample, so a batch of windows is
    ``(N, 6, 512, 14, 14)`` -- time before channels. That is the canonical *window* layout,
    returned by :func:`gather_windows` and taken by :func:`apply_weighting`.
    :func:`apply_weighting` returns the *decoder* layout ``(N, 512, 6, 14, 14)`` (channels before
    time, as ``torch.nn.Conv3d`` wants), with time step ``k`` (oldest first) scaled by coefficient
    ``k``.

Weightings (applied to the six feature maps, oldest first)
    - ``tanh`` (the paper, "3DSAL-weighted", the default): ``tanh([0.4, 0.5, 0.6, 0.7, 0.8, 0.98])``
      = [0.380, 0.462, 0.537, 0.604, 0.664, 0.753].
    - ``linear`` (the authors' published code): [0.4, 0.5, 0.6, 0.7, 0.8, 1.0].
    - ``none`` ("3DSAL-base"): all 1.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

from sal3d.pipeline.choices import DEFAULT_WEIGHTING, WEIGHTINGS  # names and coefficients, torch-free

__all__ = [
    "WINDOW",
    "WINDOW_RULES",
    "DEFAULT_WINDOW_RULE",
    "AUTHORS_START",
    "AUTHORS_WEIGHTED_FROM",
    "WEIGHTINGS",
    "DEFAULT_WEIGHTING",
    "window_indices",
    "window_index_array",
    "frames_needed",
    "weighting_coefficients",
    "window_weights",
    "apply_weighting",
    "gather_windows",
]

#: Frames per window (the current frame and the five before it).
WINDOW = 6

#: Window rule name -> what it is, in words (predict.json's "window"; the ``sal3d`` text is the one
#: predict.json has always held, so that earlier OUT_DIRs still take reruns).
WINDOW_RULES = {
    "sal3d": "frames t-5..t, oldest first, first frame repeated at the start (pipeline.windows)",
    "authors": "the authors' Batch_Creation: frames 0-4 by their own index rows, frames 0-5 unweighted, "
               "then frames t-5..t weighted (pipeline.windows)",
}
#: What sal3d trains with, and what a checkpoint that records no rule was trained with.
DEFAULT_WINDOW_RULE = "sal3d"
#: The ``authors`` rule's index rows of frames 0 .. 4, oldest first (their ``Batch_Creation``).
AUTHORS_START = ((0, 0, 0, 0, 0, 0), (0, 0, 1, 1, 1, 1), (0, 1, 1, 2, 2, 2), (0, 1, 2, 3, 3, 3),
                 (0, 1, 2, 3, 4, 4))
#: The ``authors`` rule weights the windows of frames from this one on (their code leaves frame 5's
#: window, ``X0 .. X5``, unweighted as well).
AUTHORS_WEIGHTED_FROM = 6

FrameIndices = Union[np.ndarray, range, Sequence[int], int]
Coefficients = Union[str, Sequence[float], np.ndarray, torch.Tensor]


def window_indices(t: int, length: int = WINDOW) -> list[int]:
    """Frame indices of frame ``t``'s window, oldest first: ``t-length+1 .. t``, clipped at 0.

    >>> window_indices(0)
    [0, 0, 0, 0, 0, 0]
    >>> window_indices(2)
    [0, 0, 0, 0, 1, 2]
    >>> window_indices(7)
    [2, 3, 4, 5, 6, 7]
    """
    t = operator.index(t)
    length = operator.index(length)
    if t < 0:
        raise ValueError(f"frame index must be >= 0, got {t}")
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    return [max(0, i) for i in range(t - length + 1, t + 1)]


def _as_frame_array(frames: FrameIndices) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"frame indices must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"frame indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(arr.min())}")
    return arr


def _check_rule(rule: str, length: int) -> None:
    if rule not in WINDOW_RULES:
        raise ValueError(f"unknown window rule {rule!r}; valid choices: {', '.join(map(repr, WINDOW_RULES))}")
    if rule == "authors" and length != WINDOW:
        raise ValueError(f"the authors' window rule has windows of {WINDOW} frames, not {length}")


def window_index_array(frames: FrameIndices, length: int = WINDOW, rule: str = DEFAULT_WINDOW_RULE) -> np.ndarray:
    """Vectorized :func:`window_indices`: an ``(n, length)`` int64 array, row ``i`` = window of
    ``frames[i]``, oldest first, by window rule `rule` (:data:`WINDOW_RULES`). ``frames`` may be an
    array, a range, a list or one int.

    >>> window_index_array(range(3)).tolist()
    [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 2]]
    >>> window_index_array(range(3), rule="authors").tolist()
    [[0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1], [0, 1, 1, 2, 2, 2]]
    """
    length = operator.index(length)
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    _check_rule(rule, length)
    arr = _as_frame_array(frames)
    offsets = np.arange(-(length - 1), 1, dtype=np.int64)
    rows = np.clip(arr[:, None] + offsets[None, :], 0, None)
    if rule == "authors":
        start = arr < len(AUTHORS_START)
        rows[start] = np.asarray(AUTHORS_START, dtype=np.int64)[arr[start]]
    return rows


def frames_needed(frames: FrameIndices, length: int = WINDOW) -> tuple[int, int]:
    """The run ``[start, stop)`` of consecutive frames that holds every window of ``frames``.

    For one target frame ``t`` it is ``[max(0, t-5), t+1)``; for several, the union's hull. A
    loader reads this run once and cuts all the windows from it with :func:`gather_windows`.
    """
    idx = window_index_array(frames, length)
    if idx.size == 0:
        raise ValueError("no target frames given")
    return int(idx.min()), int(idx.max()) + 1


def weighting_coefficients(name: str) -> tuple[float, ...]:
    """The six coefficients (oldest frame first) of weighting ``name``: 'tanh', 'linear' or 'none'."""
    try:
        return WEIGHTINGS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in WEIGHTINGS)
        raise ValueError(f"unknown weighting {name!r}; valid choices: {valid}") from None


def window_weights(frames: FrameIndices, coefficients: Coefficients, rule: str = DEFAULT_WINDOW_RULE) -> np.ndarray:
    """The weights of the windows of target ``frames`` by window rule `rule`: ``(n, 6)`` float64, row
    ``i`` the six coefficients of ``frames[i]``'s window, oldest first -- `coefficients` (a weighting
    name or six numbers) for every frame under the ``sal3d`` rule; under the ``authors`` rule, ones for
    the frames before :data:`AUTHORS_WEIGHTED_FROM`. :func:`apply_weighting` takes the result."""
    _check_rule(rule, WINDOW)
    if isinstance(coefficients, str):
        coefficients = weighting_coefficients(coefficients)
    if isinstance(coefficients, torch.Tensor):
        coefficients = coefficients.detach().cpu().double().numpy()
    coef = np.asarray(coefficients, dtype=np.float64).reshape(-1)
    if coef.size != WINDOW:
        raise ValueError(f"{coef.size} coefficients for windows of {WINDOW} frames")
    arr = _as_frame_array(frames)
    weights = np.broadcast_to(coef, (len(arr), WINDOW)).copy()
    if rule == "authors":
        weights[arr < AUTHORS_WEIGHTED_FROM] = 1.0
    return weights


def apply_weighting(
    windows: torch.Tensor,
    coefficients: Coefficients = DEFAULT_WEIGHTING,
    dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Weight a batch of windows and put it in the decoder's layout.

    Args:
        windows: ``(N, 6, 512, 14, 14)`` -- the window layout (time before channels, time oldest
            first), as :func:`gather_windows` returns and the feature store naturally yields;
            any float dtype (the store's float16 is fine). A numpy array is accepted too.
        coefficients: a weighting name (see :data:`WEIGHTINGS`) or six numbers, oldest first, for
            every window; or ``(N, 6)``, one row per window (:func:`window_weights`).
        dtype: dtype of the result (default float32).
        memory_format: of the result: ``torch.contiguous_format`` (default) or
            ``torch.channels_last_3d``.

    Returns:
        ``(N, 512, 6, 14, 14)``, time step ``k`` = ``windows[:, k] * coefficients[k]`` (with one row
        per window: ``windows[i, k] * coefficients[i, k]``).

    The permute, the cast and the multiply are one elementwise pass writing straight into a
    freshly allocated output of the requested layout.
    """
    windows = torch.as_tensor(windows)
    if windows.dim() != 5:
        raise ValueError(
            f"windows must be (N, T, C, H, W) = (N, {WINDOW}, 512, 14, 14), got {tuple(windows.shape)}"
        )
    n, t, c, h, w = windows.shape
    if isinstance(coefficients, str):
        coefficients = weighting_coefficients(coefficients)
    coef = torch.as_tensor(coefficients, dtype=dtype, device=windows.device)
    if coef.dim() == 2:  # one row per window
        if tuple(coef.shape) != (n, t):
            raise ValueError(f"coefficients of shape {tuple(coef.shape)} for {n} windows of {t} time steps")
        coef = coef.reshape(n, 1, t, 1, 1)
    else:
        coef = coef.flatten()
        if coef.numel() != t:
            raise ValueError(f"{coef.numel()} coefficients for windows of {t} time steps")
        coef = coef.reshape(1, 1, t, 1, 1)
    out = torch.empty((n, c, t, h, w), dtype=dtype, device=windows.device, memory_format=memory_format)
    # (N, T, C, H, W) -> (N, C, T, H, W) view; coefficients broadcast along T (dim 2).
    torch.mul(windows.permute(0, 2, 1, 3, 4), coef, out=out)
    return out


def gather_windows(
    features: np.ndarray | torch.Tensor,
    frames: FrameIndices,
    first: int = 0,
    length: int = WINDOW,
    rule: str = DEFAULT_WINDOW_RULE,
) -> np.ndarray | torch.Tensor:
    """Cut the windows of target ``frames`` out of a run of already-read features.

    Args:
        features: ``(L, 512, 14, 14)`` (any trailing shape works), the features of the consecutive
            frames ``first .. first+L-1`` of one video, frame-major as the store holds them.
        frames: target frame indices (absolute, within the video).
        first: the video frame index of ``features[0]``.
        length: frames per window (6).
        rule: the window rule (:data:`WINDOW_RULES`).

    Returns:
        ``(n, 6, 512, 14, 14)``, same type (numpy or torch) and dtype as ``features``: row ``i`` is
        ``features[window_index_array(frames, rule=rule)[i] - first]``, oldest first. Nothing is
        re-read: a frame used by several windows is copied from the same run.

    The run must hold frames ``max(0, t-5) .. t`` for every target ``t`` (see
    :func:`frames_needed`); otherwise ValueError.
    """
    first = operator.index(first)
    if first < 0:
        raise ValueError(f"first must be >= 0, got {first}")
    idx = window_index_array(frames, length, rule) - first
    run = len(features)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= run:
            need_start, need_stop = frames_needed(frames, length)
            raise ValueError(
                f"the run holds frames [{first}, {first + run}) but the windows of these targets "
                f"need frames [{need_start}, {need_stop})"
            )
    if isinstance(features, torch.Tensor):
        return features[torch.from_numpy(idx).to(features.device)]
    return np.asarray(features)[idx]
