"""The run of `sal3d evaluate`: checks, the plan, the two passes over the frames, the report.

Pass 1 reads every fixation map once, as points (`read_fixation_points`): the s-AUC negatives of
every frame come from them (`fixation_pool`), and so do the frames' own fixations in pass 2. Pass 2
(`score_videos`) reads the predictions and continuous maps, chunk by chunk, and scores them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sal3d.pipeline.atomic import write_text_atomic
from sal3d.pipeline.metrics import METRIC_NAMES
from sal3d.pipeline.progress import Progress, say
from sal3d.stages.evaluate.baseline import prepare_baseline
from sal3d.stages.evaluate.config import EvaluateConfig, EvaluateError, check_config, default_workers
from sal3d.stages.evaluate.planning import VideoPlan, missing_message, plan, plan_notes
from sal3d.stages.evaluate.results import EvaluateResult, Tally, build_report
from sal3d.stages.evaluate.images import join_fixations
from sal3d.stages.evaluate.scoring import (
    Chunk, ChunkResult, FixationChunk, FixationPool, map_tasks, read_fixations_task, score_chunk,
)


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Score the predictions as configured; writes the JSON report when asked. Raises EvaluateError."""
    check_config(config)
    predictions = Path(config.predictions)
    if config.baseline:
        prepare_baseline(config)
    if not predictions.is_dir():
        raise EvaluateError(f"{predictions}: prediction folder does not exist")
    label = config.label or (f"centre bias ({predictions.name})" if config.baseline else predictions.name)
    planned = plan(config)
    plans = planned.videos
    total = sum(p.frames for p in plans)
    if any(p.missing for p in plans) and not config.allow_missing:
        raise EvaluateError(missing_message(plans, predictions))

    notes = plan_notes(planned)
    workers = default_workers(total) if config.workers is None else max(1, config.workers)
    say(f"evaluate: {len(plans)} videos, {total} frames of {config.dataset} (layout {planned.layout}, split "
        f"{config.split}) against {predictions}, {workers} worker{'s' if workers > 1 else ''}")
    start = time.perf_counter()
    points = read_fixation_points(config, plans, workers)
    shared, no_fixation = fixation_pool(config, plans, points)
    notes += ground_truth_notes(plans, points)
    tally = score_videos(plans, workers, shared, config.chunk_frames, no_fixation)
    seconds = time.perf_counter() - start

    notes += _scoring_notes(plans, tally, total)
    report = build_report(config, planned, tally, notes, workers, seconds)
    result = EvaluateResult(report, label, seconds, total, {p.video_id: tally.scores[p.index] for p in plans})
    for note in notes:
        say(f"evaluate: {note}")
    if config.json_path:
        _write_report(Path(config.json_path), report)
    say(result.line())
    return result


def _empty_pool(config: EvaluateConfig) -> FixationPool:
    """The settings without any fixation point: what the workers of pass 1 get."""
    empty = np.empty(0, np.int32)
    return FixationPool([], empty, empty, config.seed, config.other_frames, config.n_splits, config.step,
                        config.builtins)


def read_fixation_points(config: EvaluateConfig, plans: list[VideoPlan], workers: int, label: str = "evaluate") -> list:
    """Pass 1: every video's fixation points (`images.read_fixations`), None for a video without
    fixation maps; one entry per plan, in `VideoPlan.index` order. `config` gives the s-AUC settings
    (seed, other_frames, n_splits, step, builtins, chunk_frames), `plans` the videos (index, video_id, frames,
    fixation_files: a `sal3d compare` `VideoTruth` serves too); `label` names the progress line."""
    points: list = [None] * len(plans)
    with_fixations = [p for p in plans if any(f is not None for f in p.fixation_files)]
    if with_fixations:
        # Chunks of frames, not whole videos: one long video is read by every worker.
        step = config.chunk_frames
        tasks = [FixationChunk(p.index, p.video_id, s, p.fixation_files[s:s + step])
                 for p in with_fixations for s in range(0, p.frames, step)]
        parts: dict = {p.index: {} for p in with_fixations}
        progress = Progress(f"{label}: fixation maps", total=sum(p.frames for p in with_fixations), unit="maps")

        def got_points(chunk: FixationChunk, result) -> None:
            parts[chunk.video][chunk.start] = result
            progress.update(len(chunk.files), note=chunk.video_id)

        map_tasks(read_fixations_task, tasks, workers, _empty_pool(config), got_points)
        progress.close()
        for video, chunks in parts.items():
            points[video] = join_fixations([chunks[s] for s in sorted(chunks)])
    return points


def fixation_pool(config: EvaluateConfig, plans: list[VideoPlan], points: list) -> tuple[FixationPool, dict]:
    """What the workers of pass 2 share, and per video position the frames with an empty fixation map.

    s-AUC's pool: every frame with a fixation map, those without a fixation included (they add no
    point when drawn), as evaluationFunc.m draws from every frame of the set."""
    pool_video, pool_frame = [], []
    no_fixation = {p.index: 0 for p in plans}
    for p in plans:
        if points[p.index] is not None:
            _, offsets, shapes = points[p.index]
            frames = np.flatnonzero(shapes[:, 0] > 0)
            pool_video.extend([p.index] * frames.size)
            pool_frame.extend(frames.tolist())
            no_fixation[p.index] = int(np.count_nonzero(np.diff(offsets)[frames] == 0))
    shared = FixationPool(points, np.asarray(pool_video, np.int32), np.asarray(pool_frame, np.int32), config.seed,
                          config.other_frames, config.n_splits, config.step, config.builtins)
    return shared, no_fixation


def score_videos(plans: list[VideoPlan], workers: int, shared: FixationPool, chunk_frames: int,
                 no_fixation: dict) -> Tally:
    """Pass 2: read predictions and maps in chunks of `chunk_frames`, score them; the tally of every
    video, with pass 1's count of frames without fixations (`fixation_pool`)."""
    chunks = []
    for p in plans:
        for s in range(0, p.frames, chunk_frames):
            names = p.names[s:s + chunk_frames]
            chunks.append(Chunk(p.index, p.video_id, s,
                                [p.pred_dir / p.files[n] if n in p.files else None for n in names],
                                p.map_files[s:s + chunk_frames]))
    tally = Tally(scores=[np.full((p.frames, len(METRIC_NAMES)), np.nan) for p in plans],
                  resized={p.index: [0, None, None] for p in plans}, constant={p.index: 0 for p in plans},
                  no_fixation=no_fixation)
    progress = Progress("evaluate", total=sum(p.frames for p in plans), unit="frames")

    def got_scores(chunk: Chunk, result: ChunkResult) -> None:
        tally.scores[result.video][result.start:result.start + len(result.scores)] = result.scores
        tally.constant[result.video] += result.constant
        r = tally.resized[result.video]
        r[0] += result.resized
        if r[1] is None and result.pred_size is not None:
            r[1], r[2] = result.pred_size, result.gt_size
        progress.update(len(result.scores), note=chunk.video_id)

    map_tasks(score_chunk, chunks, workers, shared, got_scores)
    progress.close()
    return tally


def ground_truth_notes(plans: list[VideoPlan], points: list) -> list[str]:
    """Notes on a kind of ground truth that the whole evaluated set lacks (`plans`: anything with
    ``map_files``; `points`: `read_fixation_points`'s)."""
    notes = []
    if all(p is None for p in points):
        notes.append("no binary fixation maps in the evaluated set: AUC-J, s-AUC and NSS are NaN")
    if not any(f is not None for p in plans for f in p.map_files):
        notes.append("no continuous maps in the evaluated set: CC, SIM and KLD are NaN")
    return notes


def _scoring_notes(plans: list[VideoPlan], tally: Tally, total: int) -> list[str]:
    """Notes on what scoring met: resized predictions per video, constant predictions."""
    notes = []
    for p in plans:
        count, pred_size, gt_size = tally.resized[p.index]
        if count:
            notes.append(f"{p.video_id}: {count} of {p.frames - len(p.missing)} predictions are "
                         f"{pred_size[1]}x{pred_size[0]}, not the ground truth's {gt_size[1]}x{gt_size[0]}: "
                         f"resized (bicubic, as MATLAB's imresize)")
    n_constant = sum(tally.constant.values())
    if n_constant:
        notes.append(f"{n_constant} of {total} frames have a constant prediction: NSS, CC and s-AUC are NaN there "
                     "and, as in the benchmark's code, left out of their means (see 'NaN frames dropped')")
    return notes


def _write_report(path: Path, report: dict) -> None:
    """Write the JSON report atomically; raises EvaluateError when it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(report, indent=1, allow_nan=False) + "\n")
    except OSError as error:
        raise EvaluateError(f"{path}: cannot write the scores ({error.strerror or error})") from None

