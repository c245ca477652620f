"""The run of `sal3d compare`: the checks, the evaluated set, each model's files, the baselines, the two
passes over the frames (as `sal3d evaluate`'s: fixation points once, then every frame's ground
truth read once and every model scored on it), the statistics and the outputs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sal3d.pipeline.comparison import ModelScores, compare as compare_scores
from sal3d.pipeline.metrics import METRIC_NAMES
from sal3d.pipeline.progress import Progress, say
from sal3d.stages.compare.baselines import Baselines, prior_map
from sal3d.stages.compare.config import CompareConfig, check_config, model_names
from sal3d.stages.compare.outputs import leaderboard_lines, write_csv, write_html, write_json
from sal3d.stages.compare.planning import ModelFiles, VideoTruth, ground_truth, locate_predictions
from sal3d.stages.compare.scoring import CompareShared, ModelsChunk, ModelsResult, init_worker, score_models
from sal3d.stages.evaluate.config import default_workers
from sal3d.stages.evaluate.run import fixation_pool, ground_truth_notes, read_fixation_points
from sal3d.stages.evaluate.scoring import map_tasks


@dataclass
class CompareResult:
    """A comparison (`pipeline.comparison.compare`'s dict), the run's facts, and the printed tables."""

    comparison: dict
    run: dict

    def lines(self) -> list[str]:
        return leaderboard_lines(self.comparison)

    def report(self) -> dict:
        """What ``--json`` writes: ``{"run": ..., **comparison}``."""
        return {"run": self.run, **self.comparison}


def compare(config: CompareConfig) -> CompareResult:
    """Compare the models as configured; writes the files asked for. Raises CompareError (or a
    DatasetError or EvaluateError naming the file) for what cannot be compared."""
    check_config(config)
    layout, videos, notes = ground_truth(config)
    models = [locate_predictions(name, folder, videos, config.allow_missing) for name, folder in config.models]
    baselines, baseline_models, baseline_notes = _baselines(config, [v.video_id for v in videos])
    models += baseline_models
    notes += baseline_notes
    total = sum(v.frames for v in videos)
    workers = default_workers(total) if config.workers is None else max(1, config.workers)
    say(f"compare: {len(models)} models ({', '.join(m.name for m in models)}) on {len(videos)} videos, {total} "
        f"frames of {config.dataset} (layout {layout}, split {config.split}), {workers} "
        f"worker{'s' if workers > 1 else ''}")

    start = time.perf_counter()
    points = read_fixation_points(config, videos, workers, label="compare")
    pool, _ = fixation_pool(config, videos, points)
    notes += ground_truth_notes(videos, points)
    scores, met = _score(videos, models, CompareShared(pool, baselines), workers, config.chunk_frames)
    seconds = time.perf_counter() - start
    for model in models:
        model.notes += _scoring_notes(*met[model.name], total)

    reference = config.reference or model_names(config)[0]
    comparison = compare_scores([ModelScores(m.name, scores[m.name]) for m in models], [v.video_id for v in videos],
                                reference, seed=config.seed, resamples=config.resamples, level=config.level)
    run = _run_facts(config, layout, videos, models, notes, seconds)
    result = CompareResult(comparison, run)
    for note in notes:
        say(f"compare: {note}")
    for model in models:
        if model.files is not None and model.convention != ModelFiles.convention:
            say(f"compare: {model.name}: read as {model.convention}")
        for note in model.notes:
            say(f"compare: {model.name}: {note}")
    _write_outputs(config, comparison, run)
    say(f"compare: {len(models)} models, {len(videos)} videos, {total} frames in {seconds:.1f} s "
        f"({total / max(seconds, 1e-9):.0f} frames/s, {total * len(models) / max(seconds, 1e-9):.0f} model-frames/s)")
    return result


def _baselines(config: CompareConfig, evaluated: list[str]) -> tuple[Baselines, list[ModelFiles], list[str]]:
    """The baselines asked for: what draws them, their entries among the models, notes."""
    prior, notes, models = None, [], []
    for name in dict.fromkeys(config.baselines):
        if name == "prior":
            prior, what, notes = prior_map(config, evaluated)
        else:
            what = f"centred Gaussian, sigma {config.center_sigma:g} of each side (as evaluate --baseline center)"
        models.append(ModelFiles(name, f"baseline: {what}", None, convention="computed in memory"))
    return Baselines(config.center_sigma, prior, config.builtins), models, notes


def _score(videos: list[VideoTruth], models: list[ModelFiles], shared: CompareShared, workers: int,
           chunk_frames: int) -> tuple[dict, dict]:
    """Pass 2: ``({model name: per video (frames, 6) scores}, {model name: [resized, constant, sizes]})``:
    how many of a model's predictions were resized and are constant, the sizes of its first resize."""
    chunks = []
    for v in videos:
        for s in range(0, v.frames, chunk_frames):
            preds = [m.name if m.files is None else m.files[v.index][s:s + chunk_frames] for m in models]
            chunks.append(ModelsChunk(v.index, v.video_id, s, v.map_files[s:s + chunk_frames], preds))
    scores = {m.name: [np.full((v.frames, len(METRIC_NAMES)), np.nan) for v in videos] for m in models}
    met = {m.name: [0, 0, None] for m in models}
    progress = Progress("compare", total=sum(v.frames for v in videos), unit="frames")

    def got_scores(chunk: ModelsChunk, result: ModelsResult) -> None:
        for m, model in enumerate(models):
            scores[model.name][result.video][result.start:result.start + result.scores.shape[1]] = result.scores[m]
            tally = met[model.name]
            tally[0] += int(result.resized[m])
            tally[1] += int(result.constant[m])
            tally[2] = tally[2] or result.sizes[m]
        progress.update(result.scores.shape[1], note=chunk.video_id)

    map_tasks(score_models, chunks, workers, shared, got_scores, initializer=init_worker)
    progress.close()
    return scores, met


def _scoring_notes(resized: int, constant: int, sizes, total: int) -> list[str]:
    """A model's notes on what scoring met: resized predictions (the first one's size and the ground
    truth's), constant ones."""
    notes = []
    if resized:
        (ph, pw), (gh, gw) = sizes
        notes.append(f"{resized} of {total} predictions are not at the ground truth's size (the first: {pw}x{ph}, "
                     f"the ground truth {gw}x{gh}): resized (bicubic, as MATLAB's imresize)")
    if constant:
        notes.append(f"{constant} of {total} frames have a constant prediction: NSS, CC and s-AUC are NaN there and "
                     "left out of their means, as the benchmark's code leaves them")
    return notes


def _run_facts(config: CompareConfig, layout: str, videos: list[VideoTruth], models: list[ModelFiles],
               notes: list[str], seconds: float) -> dict:
    """The run's facts for the JSON and the page (`stages.compare.outputs`)."""
    return {"dataset": str(config.dataset), "layout": layout, "split": config.split, "protocol": config.protocol,
            "seed": config.seed, "builtins": config.builtins, "videos": [v.video_id for v in videos],
            "frames": sum(v.frames for v in videos), "seconds": round(seconds, 3), "notes": notes,
            "models": {m.name: {"source": m.source, "convention": m.convention, "notes": m.notes,
                                "missing": m.missing} for m in models}}


def _write_outputs(config: CompareConfig, comparison: dict, run: dict) -> None:
    """The files asked for (`--json`, `--csv`, `--html`), each said when written."""
    if config.json_path:
        write_json(comparison, run, Path(config.json_path))
        say(f"compare: wrote {config.json_path}")
    if config.csv_path:
        paths = write_csv(comparison, Path(config.csv_path))
        say(f"compare: wrote {' and '.join(map(str, paths))}")
    if config.html_path:
        write_html(comparison, run, Path(config.html_path))
        say(f"compare: wrote {config.html_path}")
