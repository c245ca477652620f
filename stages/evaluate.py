"""Score saliency predictions against a dataset's ground truth, as the DHF1K benchmark does.

Predictions are 8-bit grey PNGs laid out ``PRED_DIR/<video id>/<frame name>.png``: the video id is
`VideoEntry.video_id` (DHF1K: the annotation folder ``0601``) and the frame name is
`VideoEntry.frame_names` (DHF1K: ``0001``, 1-based; frame-folder datasets: the source frame's name).

What is scored
    Every ground-truth frame of every video of the evaluated set (``--split``, ``--videos``) that has
    ground truth. The i-th ground-truth file (continuous maps and binary fixation maps, each sorted
    numerically, paired by position as `extract` pairs frames and maps) is the frame named
    ``frame_names(n)[i]``. A prediction is resized to the ground truth's size (`metrics.resize_to`,
    bilinear) when its size differs; such frames are counted and reported once per video.

Metrics (pipeline.metrics, DESIGN.md section 2)
    AUC-Judd (no jitter), s-AUC, NSS on the binary fixation maps; CC, SIM, KLD on the continuous maps.
    A frame without fixations (or without a continuous map) gives NaN for those metrics and is left
    out of their averages; every metric has its own frame count. Frame-averaged scores are the
    nan-mean over all frames of the set; video-averaged ones the mean over videos of each video's
    nan-mean (videos without a value for a metric are left out of that metric).

s-AUC negatives
    For frame f of video v: the union of the fixation locations of ``other_frames`` (10) frames drawn
    uniformly without replacement from all frames with fixations of the OTHER videos of the evaluated
    set (fewer when there are fewer). The draw, and then the 100 random splits of `auc_shuffled`, use
    one generator seeded with ``(seed, v's position in the set, f)``: the value does not depend on
    worker count or chunking. Points of a frame of another size are scaled to this frame's size
    (``y * H // h``, ``x * W // w``). With fewer than two videos with fixations there are no other
    videos: s-AUC is NaN and the report says so (no fallback).

Missing predictions
    Without ``allow_missing`` any missing prediction stops the run before scoring, with an error that
    names the first missing files and their count. With it, a missing frame is scored as an all-zero
    (constant) prediction: AUC-J 0.5, s-AUC 0.5, NSS 0, CC 0, SIM and KLD of a uniform map. It stays
    in every average and count, so missing predictions pull the score towards chance, and the report
    counts them.

Work is split into chunks of frames; worker processes read the PNGs (prediction, map, fixation) and
score. A first pass reads the fixation maps once, as points, for the s-AUC negatives; the second pass
reuses those points for the frame's own fixations instead of decoding the PNG again.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.datasets import VideoEntry, discover
from pipeline.errors import Sal3dError
from pipeline.metrics import METRIC_NAMES, resize_to, score_frame
from pipeline.postprocess import OVERLAY_DIR
from pipeline.progress import Progress, say

#: Column titles, in the paper's order (METRIC_NAMES order).
METRIC_TITLES = {"auc_j": "AUC-J", "sim": "SIM", "s_auc": "s-AUC", "cc": "CC", "nss": "NSS", "kld": "KLD"}
#: Metrics that need the binary fixation map / the continuous map.
FIXATION_METRICS = ("auc_j", "s_auc", "nss")
MAP_METRICS = ("sim", "cc", "kld")
#: Marker file that `--baseline` leaves in the prediction folder it wrote (and may overwrite).
BASELINE_MARKER = ".sal3d-baseline.json"
#: Below this many frames one process scores everything (a pool costs more than it saves).
POOL_MIN_FRAMES = 300


class EvaluateError(Sal3dError):
    """Predictions or ground truth that cannot be scored as asked; the message says which files."""


@dataclass
class EvaluateConfig:
    """Everything `sal3d evaluate` was asked; see its --help."""

    predictions: Path
    dataset: Path
    layout: str = "auto"
    split: str = "all"
    videos: list[str] | None = None
    json_path: Path | None = None
    seed: int = 0
    allow_missing: bool = False
    workers: int | None = None  # None: 1 for small sets, else one per core (at most 8)
    baseline: str | None = None  # "center": write the centre-bias set into `predictions` first
    center_sigma: float = 0.25
    other_frames: int = 10  # s-AUC: frames of other videos whose fixations are the negatives
    n_splits: int = 100
    step: float = 0.1
    resize: str = "bilinear"
    chunk_frames: int = 100
    label: str | None = None  # name of the table row group; default: the prediction folder's name


# --------------------------------------------------------------------------- planning


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


def plan(config: EvaluateConfig) -> tuple[str, list[VideoPlan], dict]:
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
    return layout, plans, extra


def _missing_message(plans: list[VideoPlan], predictions: Path, limit: int = 10) -> str:
    files = [str(p.pred_dir / f"{name}.png") for p in plans for name in p.missing]
    absent = [p.video_id for p in plans if p.pred_dir_absent]
    total = sum(p.frames for p in plans)
    text = (f"{len(files)} of {total} frames have no prediction in {predictions}"
            + (f" ({len(absent)} video folders absent: {', '.join(absent[:limit])}"
               + (", ..." if len(absent) > limit else "") + ")" if absent else "")
            + ": " + ", ".join(files[:limit]) + (f", ... ({len(files) - limit} more)" if len(files) > limit else ""))
    return text + "; pass --allow-missing to score them as constant (chance-level) maps"


# --------------------------------------------------------------------------- reading


def read_grey(path: Path) -> np.ndarray:
    """A grey image as a 2-D array (uint8, or uint16/int32/float32 for deeper PNGs); colour -> 'L'."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "1", "I;16", "I", "F"):
                image = image.convert("L")
            return np.asarray(image)
    except OSError as error:
        raise EvaluateError(f"{path}: cannot read image ({error})") from None


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except OSError as error:
        raise EvaluateError(f"{path}: cannot read image ({error})") from None


def _read_fixations(files: list[Path | None]):
    """Fixation points of one video: (flat indices int32, offsets (n+1), shapes (n, 2)); None = no file."""
    flats, offsets, shapes = [], [0], []
    for path in files:
        if path is None:
            flats.append(np.empty(0, np.int32))
            shapes.append((0, 0))
        else:
            fixation = read_grey(path)
            flats.append(np.flatnonzero(fixation != 0).astype(np.int32))  # nonzero on bool: ~10x faster
            shapes.append(fixation.shape)
        offsets.append(offsets[-1] + flats[-1].size)
    flat = np.concatenate(flats) if flats else np.empty(0, np.int32)
    return flat, np.asarray(offsets, np.int64), np.asarray(shapes, np.int32).reshape(-1, 2)


# --------------------------------------------------------------------------- worker side


@dataclass
class _Shared:
    """What every worker needs: the fixation points of all videos and the scoring settings."""

    points: list  # per video: (flat, offsets, shapes) or None without fixation maps
    pool_video: np.ndarray  # frames with fixations, ordered by video: video position
    pool_frame: np.ndarray  # ... and frame index
    pool_start: np.ndarray  # per video: first position in the pool
    pool_count: np.ndarray  # per video: frames in the pool
    seed: int
    other_frames: int
    n_splits: int
    step: float
    resize: str


_SHARED: _Shared | None = None


def _init_worker(shared: _Shared) -> None:
    global _SHARED
    _SHARED = shared


def _frame_rng(seed: int, video: int, frame: int) -> np.random.Generator:
    return np.random.default_rng([seed, video, frame])


def _negatives(shared: _Shared, video: int, shape: tuple[int, int], rng: np.random.Generator):
    """(K, 2) (y, x) fixation points of `other_frames` random frames of other videos, or None."""
    n_total = shared.pool_video.size
    n_own = int(shared.pool_count[video])
    n_other = n_total - n_own
    if n_other <= 0:
        return None
    pick = rng.choice(n_other, min(shared.other_frames, n_other), replace=False)
    pick[pick >= shared.pool_start[video]] += n_own  # skip this video's block of the pool
    h, w = shape
    parts = []
    for g in pick:
        v, f = int(shared.pool_video[g]), int(shared.pool_frame[g])
        flat, offsets, shapes = shared.points[v]
        idx = flat[offsets[f]:offsets[f + 1]].astype(np.int64)
        h0, w0 = (int(s) for s in shapes[f])
        y, x = idx // w0, idx % w0
        if (h0, w0) != (h, w):
            y, x = y * h // h0, x * w // w0
        parts.append(np.stack([y, x], axis=1))
    return np.concatenate(parts)


@dataclass
class _Chunk:
    video: int  # VideoPlan.index
    video_id: str
    start: int  # first frame index of the chunk
    preds: list  # Path or None (missing)
    maps: list  # Path or None


@dataclass
class _ChunkResult:
    video: int
    start: int
    scores: np.ndarray  # (n, 6) in METRIC_NAMES order
    resized: int
    pred_size: tuple | None  # first differing prediction size
    gt_size: tuple | None


def _score_chunk(chunk: _Chunk) -> _ChunkResult:
    shared = _SHARED
    scores = np.full((len(chunk.preds), len(METRIC_NAMES)), np.nan)
    resized, pred_size, gt_size = 0, None, None
    points = shared.points[chunk.video]
    for i, (pred_path, map_path) in enumerate(zip(chunk.preds, chunk.maps)):
        frame = chunk.start + i
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
            continue
        if pred_path is None:
            pred = np.zeros(shape, np.uint8)  # missing: a constant map (chance level)
        else:
            pred = read_grey(pred_path)
            if pred.ndim != 2:
                raise EvaluateError(f"{pred_path}: not a single-channel image (shape {pred.shape})")
            if pred.shape != shape:
                if pred_size is None:
                    pred_size, gt_size = pred.shape, shape
                resized += 1
                pred = resize_to(pred, shape, method=shared.resize)
        rng = _frame_rng(shared.seed, chunk.video, frame)
        other = _negatives(shared, chunk.video, shape, rng) if fixations is not None else None
        values = score_frame(pred, gt_map, fixations, other, n_splits=shared.n_splits, step=shared.step,
                             seed=rng)
        scores[i] = [values[m] for m in METRIC_NAMES]
    return _ChunkResult(chunk.video, chunk.start, scores, resized, pred_size, gt_size)


# --------------------------------------------------------------------------- results


def _nan_to_none(value):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def _means(scores: np.ndarray) -> tuple[dict, dict]:
    """(nan-mean per metric, count of non-NaN values per metric) over the rows of `scores`."""
    counts = np.sum(~np.isnan(scores), axis=0) if scores.size else np.zeros(len(METRIC_NAMES), int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> NaN, counted as 0
        means = np.nanmean(scores, axis=0) if scores.size else np.full(len(METRIC_NAMES), np.nan)
    return ({m: float(v) for m, v in zip(METRIC_NAMES, means)},
            {m: int(c) for m, c in zip(METRIC_NAMES, counts)})


@dataclass
class EvaluateResult:
    report: dict  # the JSON document (NaN as None)
    label: str
    seconds: float
    frames: int

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
        return "\n".join([head, frames, videos, n])

    def _workers(self) -> str:
        n = self.report["settings"]["workers"]
        return f"{n} worker" + ("s" if n > 1 else "")

    def line(self) -> str:
        c = self.report["counts"]
        return (f"evaluate: {c['videos']} videos, {c['frames']} frames in {self.seconds:.1f} s "
                f"({self.frames_per_second:.1f} frames/s, {self._workers()}); "
                f"{c['missing_frames']} frames without a prediction, {c['resized_frames']} resized")


# --------------------------------------------------------------------------- centre bias


def center_bias_map(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """A centred Gaussian, uint8 (height, width), peak 255.

    sigma is a fraction of each side (sigma_y = sigma * height, sigma_x = sigma * width): the
    Gaussian is stretched to the frame's aspect ratio, the usual centre-bias baseline.
    """
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    g = np.exp(-0.5 * y[:, None] ** 2) * np.exp(-0.5 * x[None, :] ** 2)
    return np.rint(255 * g / g.max()).astype(np.uint8)


def write_center_bias(entries: list[VideoEntry], out_dir: Path | str, sigma: float = 0.25) -> int:
    """Write a centre-bias prediction set for `entries` under `out_dir`, in the prediction layout.

    One PNG per ground-truth frame (``out_dir/<video id>/<frame name>.png``), at the ground truth's
    size. Videos without ground truth get nothing. Returns the number of files written.
    """
    out_dir = Path(out_dir)
    encoded: dict[tuple[int, int], bytes] = {}
    written = 0
    for entry in entries:
        names, maps, fixations, _ = ground_truth_frames(entry)
        if not names:
            continue
        video_dir = out_dir / entry.video_id
        video_dir.mkdir(parents=True, exist_ok=True)
        for name, map_path, fixation_path in zip(names, maps, fixations):
            size = _image_size(map_path if map_path is not None else fixation_path)
            if size not in encoded:
                buffer = io.BytesIO()
                Image.fromarray(center_bias_map(*size, sigma=sigma)).save(buffer, format="PNG")
                encoded[size] = buffer.getvalue()
            (video_dir / f"{name}.png").write_bytes(encoded[size])
            written += 1
    return written


def _prepare_baseline(config: EvaluateConfig) -> None:
    predictions = Path(config.predictions)
    if config.baseline != "center":
        raise EvaluateError(f"unknown baseline {config.baseline!r}; the only one is 'center'")
    if predictions.exists():
        if not predictions.is_dir():
            raise EvaluateError(f"{predictions}: not a folder")
        if any(predictions.iterdir()) and not (predictions / BASELINE_MARKER).is_file():
            raise EvaluateError(f"{predictions}: not empty and not written by --baseline; give a new or empty "
                                "folder for the baseline's predictions")
    _, entries = discover(config.dataset, config.layout, config.split, config.videos)
    predictions.mkdir(parents=True, exist_ok=True)
    (predictions / BASELINE_MARKER).write_text(json.dumps({"baseline": "center", "sigma": config.center_sigma}))
    count = write_center_bias(entries, predictions, config.center_sigma)
    say(f"evaluate: wrote {count} centre-bias predictions (sigma {config.center_sigma} of each side) "
        f"to {predictions}")


# --------------------------------------------------------------------------- driver


def default_workers(frames: int) -> int:
    if frames < POOL_MIN_FRAMES:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus))


def _run(fn, tasks: list, workers: int, shared: _Shared, on_result) -> None:
    """fn over tasks, in this process (workers == 1) or in a pool; results go to on_result in any order."""
    if workers <= 1 or len(tasks) <= 1:
        _init_worker(shared)
        for task in tasks:
            on_result(task, fn(task))
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(shared,)) as pool:
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


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Score the predictions as configured; writes the JSON report when asked. Raises EvaluateError."""
    predictions = Path(config.predictions)
    if config.baseline:
        _prepare_baseline(config)
    if not predictions.is_dir():
        raise EvaluateError(f"{predictions}: prediction folder does not exist")
    label = config.label or (f"centre bias ({predictions.name})" if config.baseline else predictions.name)
    layout, plans, extra = plan(config)
    total = sum(p.frames for p in plans)
    missing = sum(len(p.missing) for p in plans)
    if missing and not config.allow_missing:
        raise EvaluateError(_missing_message(plans, predictions))

    notes = []
    for video_id in extra["videos_without_ground_truth"]:
        notes.append(f"{video_id}: no ground truth (no maps, no fixation maps): not scored")
    for p in plans:
        for note in p.notes:
            notes.append(f"{p.video_id}: {note}")
        if p.pred_dir_absent:
            notes.append(f"{p.video_id}: no prediction folder {p.pred_dir}: its {p.frames} frames are scored "
                         "as constant maps")
        elif p.missing:
            shown = ", ".join(f"{n}.png" for n in p.missing[:5]) + (", ..." if len(p.missing) > 5 else "")
            notes.append(f"{p.video_id}: {len(p.missing)} of {p.frames} frames without a prediction ({shown}): "
                         "scored as constant maps")
        if p.extra_predictions:
            notes.append(f"{p.video_id}: {p.extra_predictions} prediction files match no ground-truth frame: ignored")
    if extra["unused_prediction_folders"]:
        unused = extra["unused_prediction_folders"]
        notes.append(f"{len(unused)} prediction folders are not videos of the evaluated set: ignored "
                     f"({', '.join(unused[:5])}{', ...' if len(unused) > 5 else ''})")
    workers = config.workers or default_workers(total)
    say(f"evaluate: {len(plans)} videos, {total} frames of {config.dataset} (layout {layout}, split "
        f"{config.split}) against {predictions}, {workers} worker{'s' if workers > 1 else ''}")
    start = time.perf_counter()

    # Pass 1: every fixation map, as points (s-AUC negatives, and each frame's own fixations).
    points: list = [None] * len(plans)
    with_fixations = [p for p in plans if any(f is not None for f in p.fixation_files)]
    empty_shared = _Shared([], np.empty(0, np.int32), np.empty(0, np.int32), np.zeros(0, np.int64),
                           np.zeros(0, np.int64), config.seed, config.other_frames, config.n_splits,
                           config.step, config.resize)
    if with_fixations:
        progress = Progress("evaluate: fixation maps", total=sum(p.frames for p in with_fixations), unit="maps")

        def got_points(p: VideoPlan, result) -> None:
            points[p.index] = result
            progress.update(p.frames, note=p.video_id)

        _run(_read_fixations_task, with_fixations, workers, empty_shared, got_points)
        progress.close()
    pool_video, pool_frame, pool_start, pool_count = [], [], np.zeros(len(plans), np.int64), np.zeros(len(plans), np.int64)
    for p in plans:
        pool_start[p.index] = len(pool_video)
        if points[p.index] is not None:
            _, offsets, _ = points[p.index]
            frames = np.flatnonzero(np.diff(offsets) > 0)
            pool_video.extend([p.index] * frames.size)
            pool_frame.extend(frames.tolist())
            pool_count[p.index] = frames.size
    videos_with_fixations = int(np.count_nonzero(pool_count))
    if not with_fixations:
        notes.append("no binary fixation maps in the evaluated set: AUC-J, s-AUC and NSS are NaN")
    if not any(f is not None for p in plans for f in p.map_files):
        notes.append("no continuous maps in the evaluated set: CC, SIM and KLD are NaN")
    if with_fixations and videos_with_fixations < 2:
        notes.append(f"s-AUC: its negatives come from other videos of the evaluated set, and only "
                     f"{videos_with_fixations} video has fixations: s-AUC is NaN")
    shared = _Shared(points, np.asarray(pool_video, np.int32), np.asarray(pool_frame, np.int32), pool_start,
                     pool_count, config.seed, config.other_frames, config.n_splits, config.step, config.resize)

    # Pass 2: read predictions and maps, score.
    chunks = []
    for p in plans:
        for s in range(0, p.frames, config.chunk_frames):
            names = p.names[s:s + config.chunk_frames]
            chunks.append(_Chunk(p.index, p.video_id, s,
                                 [p.pred_dir / p.files[n] if n in p.files else None for n in names],
                                 p.map_files[s:s + config.chunk_frames]))
    scores = [np.full((p.frames, len(METRIC_NAMES)), np.nan) for p in plans]
    resized = {p.index: [0, None, None] for p in plans}
    progress = Progress("evaluate", total=total, unit="frames")

    def got_scores(chunk: _Chunk, result: _ChunkResult) -> None:
        scores[result.video][result.start:result.start + len(result.scores)] = result.scores
        r = resized[result.video]
        r[0] += result.resized
        if r[1] is None and result.pred_size is not None:
            r[1], r[2] = result.pred_size, result.gt_size
        progress.update(len(result.scores), note=chunk.video_id)

    _run(_score_chunk, chunks, workers, shared, got_scores)
    progress.close()
    seconds = time.perf_counter() - start

    for p in plans:
        count, pred_size, gt_size = resized[p.index]
        if count:
            notes.append(f"{p.video_id}: {count} of {p.frames - len(p.missing)} predictions are "
                         f"{pred_size[1]}x{pred_size[0]}, not the ground truth's {gt_size[1]}x{gt_size[0]}: "
                         f"resized ({config.resize})")
    report = _report(config, layout, plans, extra, scores, resized, notes, workers, seconds)
    result = EvaluateResult(report, label, seconds, total)
    for note in notes:
        say(f"evaluate: {note}")
    if config.json_path:
        path = Path(config.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    say(result.line())
    return result


def _read_fixations_task(p: VideoPlan):
    return _read_fixations(p.fixation_files)


def _report(config, layout, plans, extra, scores, resized, notes, workers, seconds) -> dict:
    frame_means, frame_counts = _means(np.concatenate(scores) if scores else np.empty((0, 6)))
    videos, video_rows = {}, []
    for p in plans:
        means, counts = _means(scores[p.index])
        video_rows.append([means[m] for m in METRIC_NAMES])
        count, pred_size, gt_size = resized[p.index]
        videos[p.video_id] = {
            **{m: _nan_to_none(means[m]) for m in METRIC_NAMES},
            "frames": p.frames,
            "frames_per_metric": counts,
            "missing_frames": len(p.missing),
            "prediction_folder_absent": p.pred_dir_absent,
            "resized_frames": count,
            "prediction_size": list(pred_size) if pred_size else None,  # (h, w) of the first resized one
            "ground_truth_size": list(gt_size) if gt_size else None,
        }
    video_means, video_counts = _means(np.asarray(video_rows, dtype=np.float64).reshape(-1, len(METRIC_NAMES)))
    total = sum(p.frames for p in plans)
    n_missing = sum(len(p.missing) for p in plans)
    n_resized = sum(r[0] for r in resized.values())
    return {
        **{m: _nan_to_none(frame_means[m]) for m in METRIC_NAMES},
        "video_mean": {m: _nan_to_none(video_means[m]) for m in METRIC_NAMES},
        "counts": {
            "videos": len(plans),
            "frames": total,
            "frames_per_metric": frame_counts,
            "videos_per_metric": video_counts,
            "missing_frames": n_missing,
            "missing_prediction_folders": sum(p.pred_dir_absent for p in plans),
            "videos_without_ground_truth": len(extra["videos_without_ground_truth"]),
            "resized_frames": n_resized,
            "resized_videos": sum(1 for r in resized.values() if r[0]),
        },
        "missing": {
            "frames": {p.video_id: [f"{n}.png" for n in p.missing] for p in plans if p.missing},
            "prediction_folders_absent": [p.video_id for p in plans if p.pred_dir_absent],
            "videos_without_ground_truth": extra["videos_without_ground_truth"],
            "scored_as": "constant (all-zero) prediction" if n_missing else None,
            "extra_prediction_files": sum(p.extra_predictions for p in plans),
            "unused_prediction_folders": extra["unused_prediction_folders"],
        },
        "seed": config.seed,
        "settings": {
            "predictions": str(Path(config.predictions).resolve()),
            "dataset": str(Path(config.dataset).resolve()),
            "layout": layout,
            "split": config.split,
            "videos": config.videos,
            "allow_missing": config.allow_missing,
            "baseline": ({"name": config.baseline, "sigma": config.center_sigma} if config.baseline else None),
            "resize": config.resize,
            "auc_judd_jitter": False,
            "s_auc": {"other_frames": config.other_frames, "n_splits": config.n_splits, "step": config.step,
                      "negatives": "union of the fixations of other_frames random frames (uniform, without "
                                   "replacement) of the other videos of the evaluated set; generator seeded "
                                   "with (seed, video position, frame index)"},
            "nan_frames": "left out of that metric's means; counted in frames_per_metric",
            "workers": workers,
        },
        "timing": {"seconds": round(seconds, 3), "frames_per_second": round(total / seconds, 2) if seconds else None},
        "videos": videos,
        "notes": notes,
    }
