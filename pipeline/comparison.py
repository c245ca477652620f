"""Statistics of a comparison of models scored on one evaluated set: the leaderboard's means, their
bootstrap intervals over videos, and each model's paired differences against a reference.

Pure functions of numpy arrays (no I/O). Every model's scores are (n_v, 6) per-frame arrays, one per
video, in METRIC_NAMES order, NaN where a metric is not scored (the benchmark drops those frames).

Means
    frame mean: the mean over every non-NaN frame of the set (the benchmark's number);
    video mean: the mean over videos of each video's mean (videos without a value left out).

Intervals
    The frames of one video are not independent (neighbouring frames, one scene, one set of
    observers), so the bootstrap resamples VIDEOS with replacement: `resamples` draws of as many video
    indices as there are videos, from ``np.random.default_rng(seed)``, the SAME draws for every model and
    metric (the intervals are paired). A resample's frame mean is the sum of its drawn videos' frame
    sums over the sum of their non-NaN frame counts (a video drawn twice counts twice); the interval is
    the percentile interval of the resampled means at `level` (0.95: the 2.5th and 97.5th
    percentiles). Drawn as a (resamples, videos) count matrix, the resampled means are two matrix
    products: 1000 resamples of 100 videos take milliseconds.

Paired differences
    Per metric, over the frames where BOTH the model and the reference are scored: the mean of
    (model - reference) per frame, its bootstrap interval over the same draws, and, per video with such
    frames, whether the model's mean there beats the reference's (higher is better; lower for KLD):
    ``wins`` and ``ties`` are shares of those videos, ``videos`` their count. Identical scores give a
    mean of exactly 0.0, an interval of exactly [0.0, 0.0], no wins and all ties.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from sal3d.pipeline.metrics import METRIC_NAMES

#: The one metric of the six (METRIC_NAMES) for which lower is better (a divergence).
LOWER_IS_BETTER = frozenset({"kld"})

__all__ = ["LOWER_IS_BETTER", "ModelScores", "VideoSums", "compare", "paired_sums", "resample_counts", "interval", "video_sums"]


@dataclass
class ModelScores:
    """One model's per-frame scores on the evaluated set."""

    name: str
    frames: list[np.ndarray]  # one per video, in the order of `videos`: (n_v, 6) float64 in
                              # METRIC_NAMES order (pipeline.metrics); NaN = not scored there.
                              # Every model has the same videos and frame counts (one evaluated set).


@dataclass
class VideoSums:
    """Per-video sums of scores and counts of scored frames, (videos, 6) each, METRIC_NAMES order."""

    sums: np.ndarray  # float64: sum of the non-NaN frame scores
    counts: np.ndarray  # float64: how many frames are non-NaN

    def frame_mean(self) -> np.ndarray:
        """(6,) the mean over every scored frame of the set; NaN where none is scored."""
        return _ratio(self.sums.sum(axis=0), self.counts.sum(axis=0))

    def video_means(self) -> np.ndarray:
        """(videos, 6) each video's mean; NaN where the video has no scored frame."""
        return _ratio(self.sums, self.counts)

    def resampled_frame_means(self, draws: np.ndarray) -> np.ndarray:
        """(resamples, 6) the frame mean of each resample; `draws`: (resamples, videos) how many times
        each video is drawn (`resample_counts`)."""
        return _ratio(draws @ self.sums, draws @ self.counts)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, NaN where the denominator is 0."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def video_sums(frames: list[np.ndarray]) -> VideoSums:
    """`frames`: per video (n_v, 6) scores, NaN = not scored -> their per-video sums and counts."""
    sums = np.array([np.nansum(f, axis=0) if len(f) else np.zeros(len(METRIC_NAMES)) for f in frames],
                    dtype=np.float64).reshape(-1, len(METRIC_NAMES))
    counts = np.array([np.sum(~np.isnan(f), axis=0) if len(f) else np.zeros(len(METRIC_NAMES)) for f in frames],
                      dtype=np.float64).reshape(-1, len(METRIC_NAMES))
    return VideoSums(sums, counts)


def paired_sums(model: list[np.ndarray], reference: list[np.ndarray]) -> tuple[VideoSums, VideoSums, VideoSums]:
    """Per-video sums over the frames where both `model` and `reference` are scored (per metric):
    (model - reference differences, the model's scores, the reference's scores); the counts are the
    same in all three."""
    both = [~(np.isnan(m) | np.isnan(r)) for m, r in zip(model, reference)]
    model_part = [np.where(b, m, np.nan) for m, b in zip(model, both)]
    reference_part = [np.where(b, r, np.nan) for r, b in zip(reference, both)]
    differences = [m - r for m, r in zip(model_part, reference_part)]
    return video_sums(differences), video_sums(model_part), video_sums(reference_part)


def resample_counts(videos: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, videos) float64: how many times each video is drawn in each resample, `videos` draws
    with replacement per resample from ``np.random.default_rng(seed)``."""
    drawn = np.random.default_rng(seed).integers(0, videos, size=(resamples, videos))
    rows = np.repeat(np.arange(resamples), videos) * videos
    return np.bincount(rows + drawn.ravel(), minlength=resamples * videos).reshape(resamples, videos).astype(
        np.float64)


def interval(resampled: np.ndarray, level: float) -> np.ndarray:
    """(6, 2) the percentile interval [lo, hi] at `level` of each column of `resampled` (resamples, 6);
    resamples without a value (NaN: no scored frame drawn) are left out, NaN where none has one."""
    tail = (1.0 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column -> NaN
        return np.nanpercentile(resampled, [tail, 100 - tail], axis=0).T


def _json_number(value) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _per_metric(values: np.ndarray) -> dict:
    """(6,) -> {METRIC: number or None}; (6, 2) -> {METRIC: [lo, hi]}."""
    if values.ndim == 1:
        return {m: _json_number(v) for m, v in zip(METRIC_NAMES, values)}
    return {m: [_json_number(v) for v in pair] for m, pair in zip(METRIC_NAMES, values)}


def _check(models: list[ModelScores], videos: list[str], reference: str, resamples: int, level: float) -> None:
    """ValueError with the reason when the inputs do not describe one evaluated set."""
    names = [m.name for m in models]
    if not models:
        raise ValueError("no models to compare")
    if len(set(names)) != len(names):
        raise ValueError(f"model names must differ: {', '.join(names)}")
    if reference not in names:
        raise ValueError(f"reference {reference!r} is not one of the models ({', '.join(names)})")
    if not videos:
        raise ValueError("no videos to compare on")
    if resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"resamples must be >= 1 and level within (0, 1), not {resamples} and {level}")
    shapes = None
    for model in models:
        if len(model.frames) != len(videos):
            raise ValueError(f"model {model.name!r} has scores of {len(model.frames)} videos, not {len(videos)}")
        own = [np.shape(f) for f in model.frames]
        bad = [(v, s) for v, s in zip(videos, own) if len(s) != 2 or s[1] != len(METRIC_NAMES)]
        if bad:
            raise ValueError(f"model {model.name!r}, video {bad[0][0]}: scores of shape {bad[0][1]}, "
                             f"not (frames, {len(METRIC_NAMES)})")
        if shapes is not None and own != shapes:
            video, mine, theirs = next((v, a, b) for v, a, b in zip(videos, own, shapes) if a != b)
            raise ValueError(f"model {model.name!r}, video {video}: {mine[0]} frames, where "
                             f"{models[0].name!r} has {theirs[0]}")
        shapes = own


def _model_entry(sums: VideoSums, draws: np.ndarray, level: float) -> dict:
    """A model's entry of the comparison's "models"."""
    video_means = sums.video_means()
    has_value = ~np.isnan(video_means)  # videos without a scored frame are left out of the video mean
    valued_means, valued = np.where(has_value, video_means, 0.0), has_value.astype(np.float64)
    resampled_video_means = _ratio(draws @ valued_means, draws @ valued)
    return {**_per_metric(sums.frame_mean()),
            "video_mean": _per_metric(_ratio(valued_means.sum(axis=0), valued.sum(axis=0))),
            "frames": {m: int(c) for m, c in zip(METRIC_NAMES, sums.counts.sum(axis=0))},
            "ci": _per_metric(interval(sums.resampled_frame_means(draws), level)),
            "video_ci": _per_metric(interval(resampled_video_means, level))}


def _paired_entry(model: list[np.ndarray], reference: list[np.ndarray], draws: np.ndarray, level: float) -> dict:
    """A model's entry of the comparison's "paired": per metric mean difference, interval, wins, ties."""
    differences, model_sums, reference_sums = paired_sums(model, reference)
    mean = differences.frame_mean()
    ci = interval(differences.resampled_frame_means(draws), level)
    model_means, reference_means = model_sums.video_means(), reference_sums.video_means()
    paired = differences.counts > 0  # (videos, 6): the video has frames scored by both
    lower = np.array([m in LOWER_IS_BETTER for m in METRIC_NAMES])
    better = np.where(lower, model_means < reference_means, model_means > reference_means) & paired
    equal = (model_means == reference_means) & paired
    count = paired.sum(axis=0)
    out = {}
    for i, metric in enumerate(METRIC_NAMES):
        n = int(count[i])
        out[metric] = {"mean": _json_number(mean[i]), "ci": [_json_number(v) for v in ci[i]],
                       "wins": float(better[:, i].sum() / n) if n else None,
                       "ties": float(equal[:, i].sum() / n) if n else None, "videos": n}
    return out


def _video_entries(frames: list[np.ndarray], videos: list[str], sums: VideoSums) -> dict:
    """A model's entry of the comparison's "videos": per video its means and frame count."""
    return {video: {**_per_metric(means), "frames": int(len(f))}
            for video, f, means in zip(videos, frames, sums.video_means())}


def compare(models: list[ModelScores], videos: list[str], reference: str, *, seed: int = 0,
            resamples: int = 1000, level: float = 0.95) -> dict:
    """The comparison of `models` on `videos` against the model named `reference` (JSON-ready: NaN as
    None)::

        {"reference": NAME,
         "bootstrap": {"unit": "video", "resamples": R, "level": L, "seed": S},
         "models": {NAME: {METRIC: frame mean, ..., "video_mean": {METRIC: ...},
                           "frames": {METRIC: frames scored}, "ci": {METRIC: [lo, hi]},
                           "video_ci": {METRIC: [lo, hi]}}},
         "paired": {NAME: {METRIC: {"mean": d, "ci": [lo, hi], "wins": share, "ties": share,
                                    "videos": n}}},          # every NAME but the reference
         "videos": {NAME: {VIDEO: {METRIC: video mean, ..., "frames": n}}}}

    Models keep their given order. ValueError (with the reason) for an unknown reference, duplicate
    names, or scores whose videos or shapes differ between models."""
    _check(models, videos, reference, resamples, level)
    draws = resample_counts(len(videos), resamples, seed)
    frames = {m.name: [np.asarray(f, dtype=np.float64) for f in m.frames] for m in models}
    sums = {name: video_sums(f) for name, f in frames.items()}
    return {
        "reference": reference,
        "bootstrap": {"unit": "video", "resamples": int(resamples), "level": float(level), "seed": int(seed)},
        "models": {name: _model_entry(sums[name], draws, level) for name in frames},
        "paired": {name: _paired_entry(f, frames[reference], draws, level)
                   for name, f in frames.items() if name != reference},
        "videos": {name: _video_entries(f, videos, sums[name]) for name, f in frames.items()},
    }
