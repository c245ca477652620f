"""Which frames are scored: the ground truth of every evaluated video paired with the prediction file
of each frame, by the frame number in their names (`pipeline.pairing`), and what did not pair (the
package docstring, "What is scored").

`plan(config)` -> `Plan` (layout, one `VideoPlan` per video with ground truth, what was found
beside them); `missing_message` and `plan_notes` say what the plan found, in words."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sal3d.pipeline.datasets import OVERLAY_DIR, VideoEntry, discover, numeric_key
from sal3d.pipeline.pairing import PairingError, by_frame_number, frame_number, name_list, number_list, pair
from sal3d.stages.evaluate.config import EvaluateConfig, EvaluateError


@dataclass
class GroundTruth:
    """The frames of one video that have ground truth (a continuous map, a fixation map or both),
    paired by frame number; the lists hold one entry per such frame, in frame order."""

    numbers: list[int]  # frame numbers (`VideoEntry.frame_numbers`)
    names: list[str]  # prediction file stems (`VideoEntry.frame_names`)
    map_files: list[Path | None]  # None: the frame has no continuous map
    fixation_files: list[Path | None]  # None: the frame has no fixation map
    notes: list[str] = field(default_factory=list)  # what did not pair, in words
    files_without_frames: list[str] = field(default_factory=list)  # ground-truth file names no frame has


@dataclass
class VideoPlan:
    """One video to score: the prediction name and ground-truth files of each of its frames."""

    index: int  # position among the scored videos (seeds s-AUC)
    video_id: str
    names: list[str]  # prediction file stems, one per frame
    map_files: list[Path | None]
    fixation_files: list[Path | None]
    pred_dir: Path
    missing: list[str] = field(default_factory=list)  # names without a prediction file (scored as all-zero)
    files: dict[str, str] = field(default_factory=dict)  # name -> prediction file name (paired by number)
    pred_dir_absent: bool = False
    # PNGs in pred_dir whose frame number no ground-truth frame has (or whose name holds no number)
    unpaired_predictions: list[str] = field(default_factory=list)
    unpaired_ground_truth: list[str] = field(default_factory=list)  # ground-truth files no frame has
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.names)


class Plan(NamedTuple):
    """What `plan` found; unpacks as ``layout, videos, extra``."""

    layout: str  # the dataset's layout, as discovered
    videos: list[VideoPlan]  # the videos with ground truth, in order (VideoPlan.index)
    # "layout"; "videos_without_ground_truth": video ids; "unused_prediction_folders": folder names;
    # "left_out": {video id: names of the frames without a prediction} (predicted_only, else empty);
    # "videos_left_out": ids of the videos none of whose frames has a prediction (predicted_only)
    extra: dict


def ground_truth_frames(entry: VideoEntry) -> GroundTruth:
    """The frames of `entry` that have ground truth, each paired with its map and fixation map by
    frame number; raises PairingError for files that share a frame number or hold none.

    The frames are the source frames of a frame folder, or, for a video file (which is not decoded
    here), frames 1 .. the highest ground-truth number (DHF1K numbers its maps from 1). A frame
    without either kind of file is not scored; a file whose number no frame has is ignored; both
    are named in the notes."""
    maps = by_frame_number(entry.map_files(), "maps")
    fixations = by_frame_number(entry.fixation_files(), "fixation maps")
    if entry.frames:
        by_frame_number(list(entry.frames), "frames")  # refuses frames that share a number or hold none
        count = len(entry.frames)
    else:
        count = max(maps.keys() | fixations.keys(), default=0)
    numbers, names = entry.frame_numbers(count), entry.frame_names(count)
    keep = [i for i, n in enumerate(numbers) if n in maps or n in fixations]
    truth = GroundTruth([numbers[i] for i in keep], [names[i] for i in keep],
                        [maps.get(numbers[i]) for i in keep], [fixations.get(numbers[i]) for i in keep])
    if not keep:
        return truth
    without = [n for n in numbers if n not in maps and n not in fixations]
    if without:
        truth.notes.append(f"frames without ground truth (no map, no fixation map): {number_list(without)}: "
                           "not scored")
    for files, other, what, metrics in ((maps, fixations, "maps", "CC, SIM and KLD"),
                                        (fixations, maps, "fixation maps", "AUC-J, s-AUC and NSS")):
        if not files:
            continue  # the whole video lacks this kind: said once for the set (run.ground_truth_notes)
        pairing = pair(numbers, files)
        partial = [n for n in pairing.frames_without if n in other]
        if partial:
            truth.notes.append(f"frames without {what}: {number_list(partial)}: {metrics} not scored there")
        if pairing.files_without:
            unpaired = [p.name for p in pairing.files_without]
            truth.files_without_frames += unpaired
            truth.notes.append(f"{what} without a frame: {name_list(unpaired)}: ignored")
    return truth


def pair_predictions(video: VideoPlan, numbers: list[int]) -> None:
    """Pair the frames of `video` (their frame `numbers`, in `video.names` order) with the PNGs of
    its prediction folder by frame number; fills `files`, `missing`, `unpaired_predictions` and
    `pred_dir_absent`. Raises EvaluateError for two PNGs with one frame number."""
    if not video.pred_dir.is_dir():
        video.pred_dir_absent = True
        video.missing = list(video.names)
        return
    pngs = [video.pred_dir / name for name in os.listdir(video.pred_dir) if name.lower().endswith(".png")]
    try:
        by_number = by_frame_number([p for p in pngs if frame_number(p) is not None], "predictions")
    except PairingError as error:
        raise EvaluateError(str(error)) from None
    for number, name in zip(numbers, video.names):
        if number in by_number:
            video.files[name] = by_number[number].name
        else:
            video.missing.append(name)
    wanted = set(numbers)
    video.unpaired_predictions = sorted((p.name for p in pngs if frame_number(p) not in wanted), key=numeric_key)


def keep_predicted(video: VideoPlan) -> list[str]:
    """Drop the frames of `video` that have no prediction (``--predicted-only``); returns their names."""
    left_out, video.missing = video.missing, []
    keep = [i for i, name in enumerate(video.names) if name in video.files]
    video.names = [video.names[i] for i in keep]
    video.map_files = [video.map_files[i] for i in keep]
    video.fixation_files = [video.fixation_files[i] for i in keep]
    return left_out


def evaluated_set(root: Path, layout: str, split: str, videos: list[str] | None):
    """The videos of the evaluated set and their ground truth: ``(layout, [(entry, GroundTruth)], ids of
    the videos without ground truth)``. Raises EvaluateError for a selection without videos and for
    ground-truth files that cannot be paired (`ground_truth_frames`), DatasetError from `discover`."""
    layout, entries = discover(root, layout, split, videos)
    if not entries:
        raise EvaluateError(f"{root}: no video in layout {layout}, split {split}")
    with_truth, no_gt = [], []
    for entry in entries:
        try:
            truth = ground_truth_frames(entry)
        except PairingError as error:
            raise EvaluateError(str(error)) from None
        if truth.names:
            with_truth.append((entry, truth))
        else:
            no_gt.append(entry.video_id)
    return layout, with_truth, no_gt


def plan(config: EvaluateConfig) -> Plan:
    """Discover the dataset, pair ground truth with prediction files by frame number, list what is
    missing (or, with ``predicted_only``, leave those frames out)."""
    root = Path(config.dataset)
    layout, with_truth, no_gt = evaluated_set(root, config.layout, config.split, config.videos)
    predictions = Path(config.predictions)
    plans, left_out, videos_left_out = [], {}, []
    for entry, truth in with_truth:
        video = VideoPlan(len(plans), entry.video_id, truth.names, truth.map_files, truth.fixation_files,
                          predictions / entry.video_id, unpaired_ground_truth=truth.files_without_frames,
                          notes=truth.notes)
        pair_predictions(video, truth.numbers)
        if config.predicted_only and video.missing:
            left_out[video.video_id] = keep_predicted(video)
            if not video.names:
                videos_left_out.append(video.video_id)
                continue
        plans.append(video)
    if not plans and videos_left_out:
        raise EvaluateError(f"{predictions}: no frame of the evaluated set has a prediction here "
                            "(--predicted-only scores only those that have one); nothing to score")
    if not plans:
        raise EvaluateError(f"{root}: no video of layout {layout}, split {config.split} has ground truth "
                            "(continuous maps or fixation maps); nothing to score")
    evaluated = {e.video_id for e, _ in with_truth} | set(no_gt)
    # `sal3d predict --overlay` keeps its heat maps in OUT_DIR/overlays/, beside the benchmark layout.
    unused = sorted(d.name for d in predictions.iterdir()
                    if d.is_dir() and d.name not in evaluated and d.name != OVERLAY_DIR) \
        if predictions.is_dir() else []
    extra = {"layout": layout, "videos_without_ground_truth": no_gt, "unused_prediction_folders": unused,
             "left_out": left_out, "videos_left_out": videos_left_out}
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
    return text + ("; pass --allow-missing to score them as constant (chance-level) maps, or --predicted-only "
                   "to score only the frames that have a prediction")


def plan_notes(planned: Plan) -> list[str]:
    """The report's notes on the plan: videos without ground truth, each video's own notes (what of
    its ground truth did not pair), missing, left-out and unpaired prediction files, prediction
    folders that are not videos of the evaluated set."""
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
        if p.unpaired_predictions:
            notes.append(f"{p.video_id}: {len(p.unpaired_predictions)} predictions without ground truth "
                         f"({name_list(p.unpaired_predictions)}): ignored")
    for video_id, names in planned.extra["left_out"].items():
        where = "all its frames" if video_id in planned.extra["videos_left_out"] else f"{len(names)} frames"
        notes.append(f"{video_id}: {where} without a prediction left out (--predicted-only): "
                     f"{name_list([f'{n}.png' for n in names])}")
    if planned.extra["unused_prediction_folders"]:
        unused = planned.extra["unused_prediction_folders"]
        notes.append(f"{len(unused)} prediction folders are not videos of the evaluated set: ignored "
                     f"({', '.join(unused[:5])}{', ...' if len(unused) > 5 else ''})")
    return notes
