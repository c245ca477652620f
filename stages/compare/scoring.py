"""The worker side of `sal3d compare`: every model scored on one reading of each frame's ground truth.

A task is a `ModelsChunk` (consecutive frames of one video, and each model's file for them). For each
frame the worker reads the ground truth and draws the s-AUC negatives once (`frame_truth`), then
scores every model against it with a generator restored to the same state (`generator_at`): every
model gets the same negatives, jitter and splits, the draws a separate ``sal3d evaluate`` run with
the same seed makes, so each model's numbers equal that run's and the comparison is paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sal3d.pipeline.allocator import reuse_freed_memory
from sal3d.pipeline.metrics import METRIC_NAMES
from sal3d.stages.compare.baselines import Baselines
from sal3d.stages.evaluate.scoring import (
    FixationPool,
    frame_truth,
    generator_at,
    load_prediction,
    score_array,
)


@dataclass
class CompareShared:
    """What every scoring process shares: the fixation pool (s-AUC) and the baselines."""

    pool: FixationPool
    baselines: Baselines


@dataclass
class ModelsChunk:
    """A task: consecutive frames of one video and every model's prediction for them."""

    video: int  # VideoTruth.index
    video_id: str
    start: int  # first frame index of the chunk
    maps: list[Path | None]  # continuous maps
    # per model, in the comparison's order: its files for these frames (None: missing), or the
    # baseline's name for a baseline
    preds: list[list[Path | None] | str]


@dataclass
class ModelsResult:
    """What a chunk scored: (models, frames, 6) in METRIC_NAMES order, and per model how many of its
    predictions were resized and how many are constant."""

    video: int
    start: int
    scores: np.ndarray
    resized: np.ndarray  # (models,) int
    constant: np.ndarray  # (models,) int
    sizes: list  # per model: (prediction (h, w), ground truth (h, w)) of its first resized frame, or None


_SHARED: CompareShared | None = None


def init_worker(shared: CompareShared) -> None:
    """Give this process what `score_models` reads (a pool's initializer), and let it reuse the memory
    of each frame's arrays (`pipeline.allocator`)."""
    global _SHARED
    _SHARED = shared
    reuse_freed_memory()


def score_models(chunk: ModelsChunk) -> ModelsResult:
    """Every model's scores on the frames of `chunk` (the module docstring says how); EvaluateError for a
    prediction that cannot be read or a continuous map whose size is not its fixation map's."""
    shared = _SHARED
    n_models, n = len(chunk.preds), len(chunk.maps)
    scores = np.full((n_models, n, len(METRIC_NAMES)), np.nan)
    resized, constant = np.zeros(n_models, np.int64), np.zeros(n_models, np.int64)
    sizes: list = [None] * n_models
    for i, map_path in enumerate(chunk.maps):
        truth, state = frame_truth(shared.pool, chunk.video, chunk.start + i, map_path)
        if truth is None:
            continue
        shape = tuple(truth.shape)
        for m, preds in enumerate(chunk.preds):
            if isinstance(preds, str):
                pred, resized_from = shared.baselines.map(preds, shape)
            else:
                pred, resized_from = load_prediction(preds[i], shape, shared.pool.builtins)
            scores[m, i], is_constant = score_array(pred, truth, shared.pool, generator_at(state))
            constant[m] += is_constant
            if resized_from is not None:
                resized[m] += 1
                if sizes[m] is None:
                    sizes[m] = (tuple(resized_from), shape)
    return ModelsResult(chunk.video, chunk.start, scores, resized, constant, sizes)
