"""What an evaluation found: the per-video tallies of scoring (`Tally`), the JSON report built from
them (`build_report`), and the result `evaluate` returns (`EvaluateResult`: the report, the table)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sal3d.pipeline.metrics import METRIC_NAMES, METRIC_TITLES
from sal3d.stages.evaluate.config import EvaluateConfig
from sal3d.stages.evaluate.planning import Plan, VideoPlan


@dataclass
class Tally:
    """What scoring found, per video position (`VideoPlan.index`)."""

    scores: list  # per video: (frames, 6) per-frame scores in METRIC_NAMES order, NaN where not computed
    # per video: [resized frames, first resized prediction's (h, w) or None, its ground truth's (h, w)]
    resized: dict
    constant: dict  # per video: frames whose prediction is constant
    no_fixation: dict  # per video: frames whose fixation map has no fixation


def nan_to_none(value):
    """`value`, with NaN and infinities as None (JSON has no NaN)."""
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def means(scores: np.ndarray) -> tuple[dict, dict]:
    """(nan-mean per metric, count of non-NaN values per metric) over the rows of `scores` (n, 6)."""
    counts = np.sum(~np.isnan(scores), axis=0) if scores.size else np.zeros(len(METRIC_NAMES), int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> NaN, counted as 0
        values = np.nanmean(scores, axis=0) if scores.size else np.full(len(METRIC_NAMES), np.nan)
    return ({m: float(v) for m, v in zip(METRIC_NAMES, values)},
            {m: int(c) for m, c in zip(METRIC_NAMES, counts)})


def _video_record(p: VideoPlan, tally: Tally, video_means: dict, counts: dict) -> dict:
    """The report's entry of one video, given its `means`."""
    count, pred_size, gt_size = tally.resized[p.index]
    return {
        **{m: nan_to_none(video_means[m]) for m in METRIC_NAMES},
        "frames": p.frames,
        "frames_per_metric": counts,
        "nan_frames": {m: p.frames - counts[m] for m in METRIC_NAMES},
        "constant_predictions": tally.constant[p.index],
        "frames_without_fixations": tally.no_fixation[p.index],
        "missing_frames": len(p.missing),
        "predictions_without_ground_truth": p.unpaired_predictions,
        "ground_truth_without_frames": p.unpaired_ground_truth,
        "prediction_folder_absent": p.pred_dir_absent,
        "resized_frames": count,
        "prediction_size": list(pred_size) if pred_size else None,  # (h, w) of the first resized one
        "ground_truth_size": list(gt_size) if gt_size else None,
    }


def _settings(config: EvaluateConfig, layout: str, workers: int) -> dict:
    """The report's record of what was asked and of the rules applied."""
    return {
        "predictions": str(Path(config.predictions).resolve()),
        "dataset": str(Path(config.dataset).resolve()),
        "layout": layout,
        "split": config.split,
        "videos": config.videos,
        "allow_missing": config.allow_missing,
        "predicted_only": config.predicted_only,
        "pairing": "predictions, continuous maps and fixation maps paired by the frame number in their names",
        "baseline": ({"name": config.baseline, "sigma": config.center_sigma} if config.baseline else None),
        "prediction": "first channel of the PNG, as double(imread(...))(:,:,1); a palette PNG's indices",
        "resize": "to the ground truth's size, MATLAB imresize: bicubic (a = -0.5), antialiased when "
                  "shrinking",
        "builtins": config.builtins,
        "auc_judd_jitter": "rand/1e7 added to every pixel (AUC_Judd.m's default)",
        "s_auc": {"other_frames": config.other_frames, "n_splits": config.n_splits, "step": config.step,
                  "negatives": "union of the fixations of other_frames frames drawn uniformly without "
                               "replacement from all frames of the evaluated set with a fixation map "
                               "(this video and frame included), as evaluationFunc.m"},
        "random": "one generator per frame, seeded with (seed, video position, frame index)",
        "nan_frames": "a frame whose metric is NaN is left out of that metric's means (the benchmark's "
                      "allMetrics(isnan(allMetrics)) = []); counted in counts.nan_frames",
        "kld": "negative values of a resized prediction clipped to 0 (KLD only)",
        "workers": workers,
    }


def build_report(config: EvaluateConfig, planned: Plan, tally: Tally, notes: list[str], workers: int,
                 seconds: float) -> dict:
    """The JSON report (NaN as None): frame- and video-averaged scores, counts, what is missing, the
    settings, the timing, one entry per video, the notes."""
    plans, extra = planned.videos, planned.extra
    frame_means, frame_counts = means(np.concatenate(tally.scores) if tally.scores else np.empty((0, 6)))
    videos, video_rows = {}, []
    for p in plans:
        one_means, one_counts = means(tally.scores[p.index])
        video_rows.append([one_means[m] for m in METRIC_NAMES])
        videos[p.video_id] = _video_record(p, tally, one_means, one_counts)
    video_means, video_counts = means(np.asarray(video_rows, dtype=np.float64).reshape(-1, len(METRIC_NAMES)))
    total = sum(p.frames for p in plans)
    n_missing = sum(len(p.missing) for p in plans)
    n_left_out = sum(len(names) for names in extra["left_out"].values())
    return {
        **{m: nan_to_none(frame_means[m]) for m in METRIC_NAMES},
        "video_mean": {m: nan_to_none(video_means[m]) for m in METRIC_NAMES},
        "counts": {
            "videos": len(plans),
            "frames": total,
            "frames_per_metric": frame_counts,
            # frames left out of each metric's mean because it is NaN there (no ground truth of that
            # kind, no fixation in the frame, a constant prediction...), as the benchmark drops them
            "nan_frames": {m: total - frame_counts[m] for m in METRIC_NAMES},
            "constant_predictions": sum(tally.constant.values()),
            "frames_without_fixations": sum(tally.no_fixation.values()),
            "videos_per_metric": video_counts,
            "missing_frames": n_missing,
            "left_out_frames": n_left_out,
            "videos_left_out": len(extra["videos_left_out"]),
            "predictions_without_ground_truth": sum(len(p.unpaired_predictions) for p in plans),
            "ground_truth_without_frames": sum(len(p.unpaired_ground_truth) for p in plans),
            "missing_prediction_folders": sum(p.pred_dir_absent for p in plans),
            "videos_without_ground_truth": len(extra["videos_without_ground_truth"]),
            "resized_frames": sum(r[0] for r in tally.resized.values()),
            "resized_videos": sum(1 for r in tally.resized.values() if r[0]),
        },
        "missing": {
            "frames": {p.video_id: [f"{n}.png" for n in p.missing] for p in plans if p.missing},
            "prediction_folders_absent": [p.video_id for p in plans if p.pred_dir_absent],
            "videos_without_ground_truth": extra["videos_without_ground_truth"],
            "scored_as": "all-zero prediction" if n_missing else None,
            "left_out_frames": {v: [f"{n}.png" for n in names] for v, names in extra["left_out"].items()},
            "videos_left_out": extra["videos_left_out"],
            "predictions_without_ground_truth": {p.video_id: p.unpaired_predictions for p in plans
                                                 if p.unpaired_predictions},
            "ground_truth_without_frames": {p.video_id: p.unpaired_ground_truth for p in plans
                                            if p.unpaired_ground_truth},
            "unused_prediction_folders": extra["unused_prediction_folders"],
        },
        "protocol": config.protocol,
        "seed": config.seed,
        "settings": _settings(config, planned.layout, workers),
        "timing": {"seconds": round(seconds, 3), "frames_per_second": round(total / seconds, 2) if seconds else None},
        "videos": videos,
        "notes": notes,
    }


@dataclass
class EvaluateResult:
    """What `evaluate` returns: the report, the per-frame scores, and the table and line it prints."""

    report: dict  # the JSON document (NaN as None)
    label: str
    seconds: float
    frames: int
    # video id -> (frames, 6) per-frame scores in METRIC_NAMES order, NaN where a metric is NaN
    frame_scores: dict = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        """The scores, columns in the paper's order (AUC-J, SIM, s-AUC, CC, NSS, then KLD)."""
        r = self.report
        fmt = lambda v: f"{round(v, 3) + 0.0:7.3f}" if v is not None else "    nan"  # noqa: E731  (no -0.000)
        head = f"{self.label:<24}" + "".join(f"{METRIC_TITLES[m]:>7}" for m in METRIC_NAMES)
        frames = f"{'  mean over frames':<24}" + "".join(fmt(r[m]) for m in METRIC_NAMES)
        videos = f"{'  mean over videos':<24}" + "".join(fmt(r['video_mean'][m]) for m in METRIC_NAMES)
        counts = r["counts"]
        n = f"{'  frames scored':<24}" + "".join(f"{counts['frames_per_metric'][m]:>7d}" for m in METRIC_NAMES)
        dropped = f"{'  NaN frames dropped':<24}" + "".join(f"{counts['nan_frames'][m]:>7d}" for m in METRIC_NAMES)
        return "\n".join([head, frames, videos, n, dropped])

    def _workers(self) -> str:
        n = self.report["settings"]["workers"]
        return f"{n} worker" + ("s" if n > 1 else "")

    def line(self) -> str:
        """The summary: what was scored, how fast, and the counts of what did not pair."""
        c = self.report["counts"]
        missing = (f"{c['left_out_frames']} frames without a prediction left out (--predicted-only)"
                   if self.report["settings"]["predicted_only"]
                   else f"{c['missing_frames']} frames without a prediction")
        unpaired = (f", {c['ground_truth_without_frames']} ground-truth files without a frame"
                    if c["ground_truth_without_frames"] else "")
        return (f"evaluate: {c['videos']} videos, {c['frames']} frames in {self.seconds:.1f} s "
                f"({self.frames_per_second:.1f} frames/s, {self._workers()}); {missing}, "
                f"{c['predictions_without_ground_truth']} predictions without ground truth{unpaired}, "
                f"{c['resized_frames']} resized, {c['constant_predictions']} constant")
