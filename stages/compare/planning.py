"""What `sal3d compare` scores: the evaluated set's ground truth (`ground_truth`, the frames that
`sal3d evaluate` scores, in its order), and each model's prediction file for every one of those
frames (`locate_predictions`).

A model's folder is read as `sal3d evaluate` reads one (``PRED_DIR/<video id>/<frame name>.png``,
paired by frame number), and these conventions of other tools are recognised, each named in the
model's ``convention``:

* a video folder named by the video's number without its zeros (``601/`` for DHF1K's ``0601``: what
  ``sal3d predict`` writes from the file ``601.AVI``); two folders of one number are refused;
* JPEG files (``0001.jpg``) where a video folder holds no PNG; their first channel is the map;
* frames numbered from 0 (``0000.png`` is the first frame): when the model's files hold a frame 0 and
  pair more frames once shifted by one than as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sal3d.pipeline.datasets import OVERLAY_DIR, numeric_key
from sal3d.pipeline.pairing import PairingError, by_frame_number, frame_number, name_list
from sal3d.stages.compare.config import CompareConfig, CompareError
from sal3d.stages.evaluate.planning import evaluated_set

PNG = (".png",)
JPEG = (".jpg", ".jpeg")


@dataclass
class VideoTruth:
    """One evaluated video's ground truth: one entry per frame that has any, in frame order."""

    index: int  # position among the evaluated videos (seeds s-AUC, as `sal3d evaluate`'s)
    video_id: str
    names: list[str]  # the benchmark's prediction names (DHF1K: 0001)
    numbers: list[int]  # frame numbers, by which predictions are paired
    map_files: list[Path | None]
    fixation_files: list[Path | None]

    @property
    def frames(self) -> int:
        return len(self.names)


@dataclass
class ModelFiles:
    """One model's prediction file for every evaluated frame, and how its folder was read."""

    name: str
    source: str  # the prediction folder, or what a baseline is
    files: list[list[Path | None]] | None  # per video, per frame (None: no prediction); None: a baseline
    convention: str = "benchmark layout: <video id>/<frame name>.png"
    notes: list[str] = field(default_factory=list)
    missing: int = 0  # frames without a prediction (scored as all-zero maps with allow_missing)


def ground_truth(config: CompareConfig) -> tuple[str, list[VideoTruth], list[str]]:
    """The evaluated set (`stages.evaluate.planning.evaluated_set`, the videos and frames `evaluate`
    scores, in its order): ``(layout, videos with ground truth, notes)``; notes name the videos without
    ground truth and what of a video's ground truth did not pair. CompareError when nothing can be
    scored."""
    layout, with_truth, no_gt = evaluated_set(Path(config.dataset), config.layout, config.split, config.videos)
    notes = [f"{video_id}: no ground truth (no maps, no fixation maps): not scored" for video_id in no_gt]
    videos = []
    for entry, truth in with_truth:
        notes += [f"{entry.video_id}: {note}" for note in truth.notes]
        videos.append(VideoTruth(len(videos), entry.video_id, truth.names, truth.numbers, truth.map_files,
                                 truth.fixation_files))
    if not videos:
        raise CompareError(f"{config.dataset}: no video of layout {layout}, split {config.split} has ground truth "
                           "(continuous maps or fixation maps); nothing to compare")
    return layout, videos, notes


def _video_folders(name: str, root: Path, videos: list[VideoTruth]) -> tuple[dict[int, Path], bool, list[str]]:
    """{video index: its prediction folder} of model `name`, whether a folder was matched by number
    (``601`` for ``0601``), and the folders that are no evaluated video. CompareError for two folders
    of one video."""
    folders = sorted((d for d in root.iterdir() if d.is_dir()), key=numeric_key)
    by_number: dict[int, list[Path]] = {}
    for d in folders:
        if d.name.isdigit():
            by_number.setdefault(int(d.name), []).append(d)
    found, by_digits, used = {}, False, set()
    for video in videos:
        exact = root / video.video_id
        candidates = [exact] if exact.is_dir() else []
        if video.video_id.isdigit():
            candidates += [d for d in by_number.get(int(video.video_id), []) if d.name != video.video_id]
        if len(candidates) > 1:
            raise CompareError(f"{root}: {' and '.join(d.name for d in candidates)} are both video "
                               f"{video.video_id} of model {name!r}; keep one")
        if candidates:
            found[video.index] = candidates[0]
            by_digits = by_digits or candidates[0] != exact
            used.add(candidates[0].name)
    unused = [d.name for d in folders if d.name not in used and d.name != OVERLAY_DIR]
    return found, by_digits, unused


def _numbered_images(folder: Path) -> tuple[dict[int, Path], str | None, list[str]]:
    """A video folder's predictions ``({frame number: file}, kind, names without a number)``: its PNGs,
    or its JPEGs when it has no PNG (kind ``"png"``, ``"jpeg"``, None when it has neither)."""
    names = os.listdir(folder)
    for kind, suffixes in (("png", PNG), ("jpeg", JPEG)):
        files = [folder / n for n in names if n.lower().endswith(suffixes)]
        if files:
            unnumbered = [p.name for p in files if frame_number(p) is None]
            try:
                return by_frame_number([p for p in files if frame_number(p) is not None], "predictions"), kind, \
                    unnumbered
            except PairingError as error:
                raise CompareError(str(error)) from None
    return {}, None, []


def _frame_offset(numbered: dict[int, dict[int, Path]], videos: list[VideoTruth]) -> int:
    """1 when the model numbers its frames from 0 (it has a frame 0 and pairs more frames shifted by
    one), else 0: what to add to a file's number to get the frame's."""
    if not any(0 in files for files in numbered.values()):
        return 0
    as_is = shifted = 0
    for video in videos:
        files = numbered.get(video.index, {})
        as_is += sum(n in files for n in video.numbers)
        shifted += sum(n - 1 in files for n in video.numbers)
    return 1 if shifted > as_is else 0


def locate_predictions(name: str, root: Path, videos: list[VideoTruth], allow_missing: bool) -> ModelFiles:
    """Model `name`'s file for every evaluated frame, from its folder `root` (conventions: the module
    docstring). CompareError for a folder that cannot be read that way, and, without
    `allow_missing`, for frames without a prediction (naming the first files and their count)."""
    root = Path(root)
    folders, by_digits, unused = _video_folders(name, root, videos)
    numbered, kinds, notes = {}, set(), []
    for index, folder in folders.items():
        numbered[index], kind, unnumbered = _numbered_images(folder)
        kinds.add(kind)
        if unnumbered:
            notes.append(f"{folder.name}: files without a frame number ignored: {name_list(unnumbered)}")
    offset = _frame_offset(numbered, videos)
    model = ModelFiles(name, str(root), [])
    absent, missing_files = [], []
    for video in videos:
        files = numbered.get(video.index, {})
        row = [files.get(n - offset) for n in video.numbers]
        model.files.append(row)
        if video.index not in folders:
            absent.append(video.video_id)
        folder = folders.get(video.index, root / video.video_id)
        missing_files += [str(folder / f"{n}.png") for n, f in zip(video.names, row) if f is None]
        paired = {n - offset for n in video.numbers}
        extra = [p.name for n, p in files.items() if n not in paired]
        if extra:
            notes.append(f"{video.video_id}: {len(extra)} predictions without ground truth ({name_list(extra)}): "
                         "ignored")
    model.missing = len(missing_files)
    model.convention = _convention(by_digits, "jpeg" in kinds, offset)
    if unused:
        notes.append(f"{len(unused)} folders are no video of the evaluated set: ignored "
                     f"({', '.join(unused[:5])}{', ...' if len(unused) > 5 else ''})")
    if model.missing:
        total = sum(v.frames for v in videos)
        if not allow_missing:
            raise CompareError(_missing_message(name, root, missing_files, total, absent))
        notes.append(f"{model.missing} of {total} frames without a prediction"
                     + (f" ({len(absent)} video folders absent: {', '.join(absent[:5])})" if absent else "")
                     + ": scored as all-zero maps (--allow-missing)")
    model.notes = notes
    return model


def _convention(by_digits: bool, jpeg: bool, offset: int) -> str:
    """How a model's folder was read, in words (the module docstring's conventions)."""
    parts = []
    if by_digits:
        parts.append("video folders named by number (601 for 0601)")
    if jpeg:
        parts.append("JPEG files (first channel)")
    if offset:
        parts.append("frames numbered from 0 (file 0 is the first frame)")
    return "; ".join(parts) if parts else ModelFiles.convention


def _missing_message(name: str, root: Path, files: list[str], total: int, absent: list[str], limit: int = 10) -> str:
    """The error for a model with frames without a prediction: the count, the first files, the way out."""
    text = f"model {name!r}: {len(files)} of {total} frames have no prediction in {root}"
    if absent:
        text += (f" ({len(absent)} video folders absent: {', '.join(absent[:limit])}"
                 + (", ..." if len(absent) > limit else "") + ")")
    text += ": " + ", ".join(files[:limit]) + (f", ... ({len(files) - limit} more)" if len(files) > limit else "")
    return text + ("; a folder per video (PRED_DIR/<video id>/<frame name>.png, as sal3d evaluate reads) is "
                   "expected; pass --allow-missing to score missing frames as all-zero maps")

