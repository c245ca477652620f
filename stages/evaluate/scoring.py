"""The worker side of `sal3d evaluate`: what every scoring process shares (`FixationPool`), the s-AUC
negatives of a frame, the scoring of a chunk of frames, and the process pool that runs the tasks.

A worker gets the pool once (`init_worker`); tasks are `Chunk`s of one video's frames and come back
as `ChunkResult`s. Every frame draws from its own generator, seeded with (seed, video position,
frame index), so the scores do not depend on the worker count or the chunking.

A frame is scored in two steps, so that many predictions can share one reading of its ground truth:
`frame_truth` reads the frame's ground truth and draws its s-AUC negatives, and returns the state of
the frame's generator after those draws; `score_one` scores one prediction against that truth with a
generator at that state (`generator_at`). A prediction scored with the generator restored to that
state gets exactly the numbers a separate `evaluate` run with the same seed gives it."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sal3d.pipeline.allocator import reuse_freed_memory
from sal3d.pipeline.imresize import imresize
from sal3d.pipeline.matlab import matlab_round
from sal3d.pipeline.metrics import METRIC_NAMES, FrameTruth, ScoringSettings, prepare_truth, score_prediction
from sal3d.stages.evaluate.config import EvaluateError
from sal3d.stages.evaluate.images import FixationPoints, read_fixations, read_grey, read_prediction


@dataclass
class FixationPool:
    """What every worker needs: the fixation points of all videos and the scoring settings."""

    points: list  # per video: (flat, offsets, shapes) or None without fixation maps
    pool_video: np.ndarray  # s-AUC pool: every frame with a fixation map, ordered by video: video position
    pool_frame: np.ndarray  # ... and frame index
    seed: int
    other_frames: int
    n_splits: int
    step: float
    builtins: str

    def settings(self) -> ScoringSettings:
        """The benchmark's protocol with this pool's s-AUC parameters and MATLAB built-ins."""
        return ScoringSettings(self.n_splits, self.step, jitter=True, rules="dhf1k", colon=self.builtins)


_SHARED: FixationPool | None = None


def init_worker(shared: FixationPool) -> None:
    """Give this process the pool that `score_chunk` reads (a pool's initializer), and let it reuse the
    memory of each frame's arrays (`pipeline.allocator`)."""
    global _SHARED
    _SHARED = shared
    reuse_freed_memory()


def frame_rng(seed: int, video: int, frame: int) -> np.random.Generator:
    """The generator of one frame: the frames drawn for s-AUC, AUC-Judd's jitter, s-AUC's splits."""
    return np.random.default_rng([seed, video, frame])


def shuffled_negatives(shared: FixationPool, shape: tuple[int, int], rng: np.random.Generator):
    """(K, 2) (y, x) s-AUC negatives for a frame of size `shape`, or None when the pool is empty.

    As ``evaluationFunc.m``: ``randsample(N, min(10, N))`` frames of the whole evaluated set (this
    frame and its video included), each frame's fixations as 1-based points ``[x y]`` multiplied by
    ``size(result) ./ size(Ix) = [H/h, W/w]``, then ``makeFixationMap.m``: rounded, points outside
    the frame dropped, their union taken. The benchmark's code multiplies x by the *height* ratio and
    y by the *width* ratio; that is reproduced, since published scores come from it, and it equals
    the natural scaling whenever the two frames have the same aspect ratio (all of DHF1K).
    """
    n_pool = shared.pool_video.size
    if n_pool == 0:
        return None
    pick = rng.choice(n_pool, min(shared.other_frames, n_pool), replace=False)
    h, w = shape
    parts = []
    for g in pick:
        v, f = int(shared.pool_video[g]), int(shared.pool_frame[g])
        flat, offsets, shapes = shared.points[v]
        idx = flat[offsets[f]:offsets[f + 1]].astype(np.int64)
        h0, w0 = (int(s) for s in shapes[f])
        if (h0, w0) == (h, w):
            parts.append(idx)
            continue
        x = matlab_round((idx % w0 + 1) * (h / h0))  # 1-based column times the height ratio
        y = matlab_round((idx // w0 + 1) * (w / w0))  # 1-based row times the width ratio
        keep = (x >= 1) & (x <= w) & (y >= 1) & (y <= h)  # checkBounds.m
        parts.append(((y[keep] - 1) * w + (x[keep] - 1)).astype(np.int64))
    flat = np.unique(np.concatenate(parts))  # the union map of makeFixationMap.m
    return np.stack([flat // w, flat % w], axis=1)


@dataclass
class Chunk:
    """A task: consecutive frames of one video."""

    video: int  # VideoPlan.index
    video_id: str
    start: int  # first frame index of the chunk
    preds: list  # prediction Path, or None (missing)
    maps: list  # continuous map Path, or None


@dataclass
class ChunkResult:
    """What a chunk scored, and what scoring it met."""

    video: int
    start: int
    scores: np.ndarray  # (n, 6) in METRIC_NAMES order
    resized: int
    pred_size: tuple | None  # first differing prediction size
    gt_size: tuple | None
    constant: int = 0  # frames whose (resized) prediction is constant


def generator_at(state: dict) -> np.random.Generator:
    """A new generator whose bit generator is at ``state`` (a ``bit_generator.state`` of `frame_rng`)."""
    rng = np.random.default_rng(0)
    rng.bit_generator.state = state
    return rng


def frame_truth(shared: FixationPool, video: int, frame: int, map_path: Path | None):
    """Read one frame's ground truth and draw its s-AUC negatives: ``(truth, rng_state)``.

    Args:
        shared: the pool (`init_worker`'s).
        video: the frame's video position (VideoPlan.index); frame: its index in the video.
        map_path: its continuous map, or None.

    Returns:
        ``(FrameTruth, state)``: the truth under the benchmark's rules (`FixationPool.settings`), and
        the ``bit_generator.state`` of the frame's generator (`frame_rng`) after the negatives were
        drawn from it; or ``(None, None)`` for a frame without any ground truth. Score each prediction
        with `score_one` and ``generator_at(state)`` (a fresh generator per prediction), so that every
        prediction gets the jitter and s-AUC splits a separate `evaluate` run draws.

    Raises EvaluateError for a continuous map whose size is not its fixation map's.
    """
    points = shared.points[video]
    gt_map = read_grey(map_path) if map_path is not None else None
    fixations, shape = None, None
    if points is not None and points[2][frame, 0] > 0:
        flat, offsets, shapes = points
        shape = tuple(int(s) for s in shapes[frame])
        fixations = np.zeros(shape, np.bool_)  # bool: the metrics find its nonzeros ~10x faster
        fixations.ravel()[flat[offsets[frame]:offsets[frame + 1]]] = True
    if gt_map is not None:
        if shape is not None and gt_map.shape != shape:
            raise EvaluateError(f"{map_path}: continuous map is {gt_map.shape[1]}x{gt_map.shape[0]} but "
                                f"its fixation map is {shape[1]}x{shape[0]}")
        shape = gt_map.shape
    if shape is None:  # no ground truth for this frame (cannot happen for planned frames)
        return None, None
    rng = frame_rng(shared.seed, video, frame)
    other = shuffled_negatives(shared, shape, rng) if fixations is not None else None
    return prepare_truth(gt_map, fixations, other, shared.settings()), rng.bit_generator.state


def load_prediction(pred_path: Path | None, shape: tuple[int, int], builtins: str):
    """A prediction at the ground truth's `shape`, as the benchmark reads it: ``(pred, resized_from)``.

    `pred_path` None (a missing prediction) gives an all-zero uint8 map, as a black PNG. A prediction
    of another size is resized to `shape` with MATLAB's bicubic ``imresize`` (`builtins`: whose
    built-ins, `FixationPool.builtins`); ``resized_from`` is then its (h, w), else None."""
    if pred_path is None:
        return np.zeros(shape, np.uint8), None
    pred = read_prediction(pred_path)
    if pred.shape == tuple(shape):
        return pred, None
    return imresize(pred, shape, flavour=builtins), pred.shape


def score_array(pred: np.ndarray, truth: FrameTruth, shared: FixationPool, rng: np.random.Generator):
    """Score one prediction already at the truth's size (`load_prediction`): ``(row, constant)``.

    `rng`: the frame's generator at the state `frame_truth` returned (`generator_at`); consumed.
    ``row``: (6,) float64 in METRIC_NAMES order; ``constant``: whether the prediction is constant."""
    lo, hi = pred.min(), pred.max()
    values = score_prediction(pred, truth, shared.settings(), seed=rng, bounds=(lo, hi))
    return np.array([values[m] for m in METRIC_NAMES]), bool(lo == hi)


def score_one(pred_path: Path | None, truth: FrameTruth, shared: FixationPool, rng: np.random.Generator):
    """Score one prediction file against a frame's truth (`frame_truth`): ``(row, resized_from, constant)``.

    Args:
        pred_path: the prediction's file, or None for a missing one (scored as an all-zero map, as a
            black PNG).
        truth: the frame's truth.
        shared: the pool (for the settings and the MATLAB built-ins of the resize).
        rng: the frame's generator at the state `frame_truth` returned (`generator_at`); consumed.

    Returns:
        ``row``: (6,) float64 in METRIC_NAMES order; ``resized_from``: the prediction's (h, w) when it
        was resized to the ground truth's size (bicubic, as the benchmark), else None; ``constant``:
        whether the (resized) prediction is constant.
    """
    pred, resized_from = load_prediction(pred_path, tuple(truth.shape), shared.builtins)
    row, constant = score_array(pred, truth, shared, rng)
    return row, resized_from, constant


def score_chunk(chunk: Chunk) -> ChunkResult:
    """Read and score every frame of `chunk` under the benchmark's rules, with the pool of
    `init_worker` (`frame_truth`, then `score_one`); raises EvaluateError for a continuous map whose
    size is not its fixation map's."""
    shared = _SHARED
    scores = np.full((len(chunk.preds), len(METRIC_NAMES)), np.nan)
    resized, pred_size, gt_size, constant = 0, None, None, 0
    for i, (pred_path, map_path) in enumerate(zip(chunk.preds, chunk.maps)):
        truth, state = frame_truth(shared, chunk.video, chunk.start + i, map_path)
        if truth is None:
            continue
        scores[i], resized_from, is_constant = score_one(pred_path, truth, shared, generator_at(state))
        if resized_from is not None:
            if pred_size is None:
                pred_size, gt_size = resized_from, tuple(truth.shape)
            resized += 1
        constant += is_constant
    return ChunkResult(chunk.video, chunk.start, scores, resized, pred_size, gt_size, constant)


@dataclass
class FixationChunk:
    """A task of the first pass: the fixation maps of consecutive frames of one video."""

    video: int  # VideoPlan.index
    video_id: str
    start: int  # first frame index of the chunk
    files: list  # fixation map Path, or None


def read_fixations_task(chunk: FixationChunk) -> FixationPoints:
    """The fixation points of a chunk's frames (`read_fixations`)."""
    return read_fixations(chunk.files)


def map_tasks(fn, tasks: list, workers: int, shared, on_result, initializer=init_worker) -> None:
    """fn over tasks, in this process (workers == 1) or in a pool; results go to on_result in any order.
    Every process that runs `fn` first calls ``initializer(shared)`` (what its tasks read)."""
    # The compiled loops the scoring runs, loaded (or compiled, on a machine's first run) once, here: a
    # forked worker inherits them instead of loading them again.
    import sal3d.pipeline.kernels  # noqa: F401
    if workers <= 1 or len(tasks) <= 1:
        initializer(shared)
        for task in tasks:
            on_result(task, fn(task))
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=initializer, initargs=(shared,)) as pool:
        pending, queue = {}, iter(tasks)
        for task in queue:  # keep the pool fed, a bounded number of tasks in flight
            pending[pool.submit(fn, task)] = task
            if len(pending) >= 3 * workers:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                on_result(task, future.result())  # re-raises a worker's EvaluateError here
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(fn, nxt)] = nxt
