"""Which frames are scored: the ground truth of every evaluated video paired with the prediction file
each frame asks for, and what is missing or left over (the package docstring, "What is scored").

`plan(config)` -> `Plan` (layout, one `VideoPlan` per video with ground truth, what was found
beside them); `missing_message` and `plan_notes` say what the plan found, in words."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sal3d.pipeline.datasets import VideoEntry, discover
from sal3d.pipeline.postprocess import OVERLAY_DIR
from sal3d.stages.evaluate.config import EvaluateConfig, EvaluateError


@dataclass
class VideoPlan:
    """One video to score: the prediction name and ground-truth files of each of its frames."""

    index: int  # position among the scored videos (seeds s-AUC)
    video_id: str
    names: list[str]  # prediction file stems, one per frame
    map_files: list[Path | None]
    fixation_files: list[Path | None]
    pred_dir: Path
    missing: list[str] = field(default_factory=list)  # names without a prediction file
    files: dict[str, str] = field(default_factory=dict)  # name -> prediction file name (.png, any case)
    pred_dir_absent: bool = False
    extra_predictions: int = 0  # PNGs in pred_dir that no ground-truth frame asks for
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.names)


class Plan(NamedTuple):
    """What `plan` found; unpacks as ``layout, videos, extra``."""

    layout: str  # the dataset's layout, as discovered
    videos: list[VideoPlan]  # the videos with ground truth, in order (VideoPlan.index)
    # "layout"; "videos_without_ground_truth": video ids; "unused_prediction_folders": folder names
    extra: dict


def ground_truth_frames(entry: VideoEntry) -> tuple[list[str], list[Path | None], list[Path | None], list[str]]:
    """The frames of `entry` that have ground truth: (prediction names, map files, fixation files, notes).

    Files are paired by position (numeric order); when the two lists differ in length, the longer
    sets the frame count and the other's missing entries are None (those metrics are NaN there).
    """
    maps, fixations = entry.map_files(), entry.fixation_files()
    notes = []
    n = max(len(maps), len(fixations))
    if maps and fixations and len(maps) != len(fixations):
        notes.append(f"{len(maps)} continuous maps but {len(fixations)} fixation maps: frames past the "
                     "shorter list are scored without it")
    names = entry.frame_names(n)
    if len(names) < n:
        notes.append(f"{n} ground-truth frames but only {len(names)} source frames: scoring the first "
                     f"{len(names)}")
        n = len(names)
    pad = lambda files: [files[i] if i < len(files) else None for i in range(n)]  # noqa: E731
    return names, pad(maps), pad(fixations), notes


def plan(config: EvaluateConfig) -> Plan:
    """Discover the dataset, pair ground truth with prediction paths, list what is missing."""
    root = Path(config.dataset)
    layout, entries = discover(root, config.layout, config.split, config.videos)
    if not entries:
        raise EvaluateError(f"{root}: no video in layout {layout}, split {config.split}")
    predictions = Path(config.predictions)
    plans, no_gt = [], []
    for entry in entries:
        names, maps, fixations, notes = ground_truth_frames(entry)
        if not names:
            no_gt.append(entry.video_id)
            continue
        pred_dir = predictions / entry.video_id
        video = VideoPlan(len(plans), entry.video_id, names, maps, fixations, pred_dir, notes=notes)
        if pred_dir.is_dir():
            present = {p[:-4]: p for p in os.listdir(pred_dir) if p.lower().endswith(".png")}
            video.missing = [name for name in names if name not in present]
            video.files = {name: present[name] for name in names if name in present}
            video.extra_predictions = len(present.keys() - set(names))
        else:
            video.pred_dir_absent = True
            video.missing = list(names)
        plans.append(video)
    if not plans:
        raise EvaluateError(f"{root}: no video of layout {layout}, split {config.split} has ground truth "
                            "(continuous maps or fixation maps); nothing to score")
    evaluated = {e.video_id for e in entries}
    # `sal3d predict --overlay` keeps its heat maps in OUT_DIR/overlays/, beside the benchmark layout.
    unused = sorted(d.name for d in predictions.iterdir()
                    if d.is_dir() and d.name not in evaluated and d.name != OVERLAY_DIR) \
        if predictions.is_dir() else []
    extra = {"layout": layout, "videos_without_ground_truth": no_gt, "unused_prediction_folders": unused}
    return Plan(layout, plans, extra)


def missing_message(plans: list[VideoPlan], predictions: Path, limit: int = 10) -> str:
    """The error without --allow-missing: how many frames lack a prediction, the first `limit` files."""
    files = [str(p.pred_dir / f"{name}.png") for p in plans for name in p.missing]
    absent = [p.video_id for p in plans if p.pred_dir_absent]
    total = sum(p.frames for p in plans)
    text = (f"{len(files)} of {total} frames have no prediction in {predictions}"
            + (f" ({len(absent)} video folders absent: {', '.join(absent[:limit])}"
               + (", ..." if len(absent) > limit else "") + ")" if absent else "")
            + ": " + ", ".join(files[:limit]) + (f", ... ({len(files) - limit} more)" if len(files) > limit else ""))
    return text + "; pass --allow-missing to score them as constant (chance-level) maps"


def plan_notes(planned: Plan) -> list[str]:
    """The report's notes on the plan: videos without ground truth, each video's own notes, missing
    and extra prediction files, prediction folders that are not videos of the evaluated set."""
    notes = []
    for video_id in planned.extra["videos_without_ground_truth"]:
        notes.append(f"{video_id}: no ground truth (no maps, no fixation maps): not scored")
    for p in planned.videos:
        for note in p.notes:
            notes.append(f"{p.video_id}: {note}")
        if p.pred_dir_absent:
            notes.append(f"{p.video_id}: no prediction folder {p.pred_dir}: its {p.frames} frames are scored "
                         "as all-zero maps")
        elif p.missing:
            shown = ", ".join(f"{n}.png" for n in p.missing[:5]) + (", ..." if len(p.missing) > 5 else "")
            notes.append(f"{p.video_id}: {len(p.missing)} of {p.frames} frames without a prediction ({shown}): "
                         "scored as all-zero maps")
        if p.extra_predictions:
            notes.append(f"{p.video_id}: {p.extra_predictions} prediction files match no ground-truth frame: ignored")
    if planned.extra["unused_prediction_folders"]:
        unused = planned.extra["unused_prediction_folders"]
        notes.append(f"{len(unused)} prediction folders are not videos of the evaluated set: ignored "
                     f"({', '.join(unused[:5])}{', ...' if len(unused) > 5 else ''})")
    return notes
