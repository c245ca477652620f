"""Score saliency predictions against a dataset's ground truth, as the DHF1K benchmark's code does.

Predictions are PNGs laid out ``PRED_DIR/<video id>/<frame name>.png``: the video id is
`VideoEntry.video_id` (DHF1K: the annotation folder ``0601``) and the frame name is
`VideoEntry.frame_names` (DHF1K: ``0001``, 1-based; frame-folder datasets: the source frame's name).

What is scored
    Every ground-truth frame of every video of the evaluated set (``--split``, ``--videos``) that has
    ground truth. The i-th ground-truth file (continuous maps and binary fixation maps, each sorted
    numerically, paired by position as `extract` pairs frames and maps) is the frame named
    ``frame_names(n)[i]``.

The protocol ``dhf1k`` (the only one): the rules of the benchmark's own code
    Published DHF1K, UCF-Sports and Hollywood-2 scores come from the benchmark's MATLAB code
    (``evaluationFunc.m`` driving ``AUC_Judd.m``, ``AUC_shuffled.m``, ``NSS.m``, ``CC.m``,
    ``similarity.m``; ``KLdiv.m`` for KLD). This stage applies its rules:

    * A prediction is read as ``double(imread(...))``, first channel, and resized to the ground
      truth's size with MATLAB's ``imresize`` (bicubic, antialiased when shrinking;
      `pipeline.imresize`) before any metric.
    * Per-frame metrics follow the MATLAB functions, degenerate maps included
      (`pipeline.metrics`, ``rules="dhf1k"``): a constant prediction gives NaN for NSS, CC and s-AUC.
      AUC-Judd adds ``rand/1e7`` to every pixel before scoring (``AUC_Judd.m``'s default jitter),
      so ties between equal 8-bit values are broken at random.
    * s-AUC's negatives, for each frame: the union of the fixations of ``other_frames`` (10) frames
      drawn uniformly without replacement from *all* frames of the evaluated set that have a
      fixation map (the same video and the same frame included), as ``evaluationFunc.m`` draws them;
      then 100 splits, step 0.1 (``AUC_shuffled.m``). Points of a frame of another size are scaled
      as ``evaluationFunc.m`` scales them and rounded and bounded as ``makeFixationMap.m`` does (see
      `shuffled_negatives`). One video alone gets an s-AUC.
    * A frame whose metric is NaN is left out of that metric's mean, as the benchmark's
      ``allMetrics(isnan(allMetrics)) = []`` does; the report counts those frames per metric
      (``nan_frames``) and the frames whose prediction is constant, so none goes unseen.
    * KLD (not in ``evaluationFunc.m``; ``KLdiv.m``): negative values that bicubic overshoot leaves
      in a resized prediction are clipped to 0 for KLD only (``KLdiv.m`` would return a complex
      number); the other metrics see them as MATLAB does.

    Randomness (the frames drawn for s-AUC, AUC-Judd's jitter, s-AUC's splits) comes from one
    generator per frame seeded with ``(seed, video position, frame index)``: scores depend on the
    seed, not on the worker count or the chunking. They cannot match MATLAB's random bits: AUC-Judd
    and s-AUC agree with the benchmark's code in distribution; NSS, CC, SIM and KLD agree to
    rounding. ``evaluationFunc.m`` scores at most 50,000 frames, drawn at random, when a set has more;
    this stage scores all of them (the same expectation, less variance).

    Frame-averaged scores (the benchmark's) are the mean over all non-NaN frames of the set;
    video-averaged ones the mean over videos of each video's mean (videos without a value for a
    metric are left out of that metric).

Missing predictions
    Without ``allow_missing`` any missing prediction stops the run before scoring, with an error that
    names the first missing files and their count. With it, a missing frame is scored as an all-zero
    prediction (what a black PNG gets under these rules: NaN for NSS, CC and s-AUC, which are dropped
    and counted; AUC-J ~0.5; SIM 0; a large KLD), and the report counts them.

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

from sal3d.pipeline.datasets import VideoEntry, discover
from sal3d.pipeline.atomic import write_text_atomic
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.imresize import FLAVOURS as BUILTINS, imresize
from sal3d.pipeline.metrics import METRIC_NAMES, ScoringSettings, score_frame
from sal3d.pipeline.postprocess import OVERLAY_DIR
from sal3d.pipeline.progress import Progress, say
from sal3d.pipeline.device import usable_cpus

#: Column titles, in the paper's order (METRIC_NAMES order).
METRIC_TITLES = {"auc_j": "AUC-J", "sim": "SIM", "s_auc": "s-AUC", "cc": "CC", "nss": "NSS", "kld": "KLD"}
#: Metrics that need the binary fixation map / the continuous map.
FIXATION_METRICS = ("auc_j", "s_auc", "nss")
MAP_METRICS = ("sim", "cc", "kld")
#: Marker file that `--baseline` leaves in the prediction folder it wrote (and may overwrite).
BASELINE_MARKER = ".sal3d-baseline.json"
#: Below this many frames one process scores everything (a pool costs more than it saves).
POOL_MIN_FRAMES = 300
MAX_WORKERS = 8
#: Scoring protocols: "dhf1k" applies the DHF1K benchmark code's rules (see the module docstring).
PROTOCOLS = ("dhf1k",)


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
    # scoring processes; 0 or 1: in this process
    workers: int | None = field(default=None, metadata={
        "auto": f"1 below {POOL_MIN_FRAMES} frames, else one per core, at most {MAX_WORKERS}"})
    baseline: str | None = None  # "center": write the centre-bias set into `predictions` first
    center_sigma: float = 0.25
    protocol: str = "dhf1k"
    other_frames: int = 10  # s-AUC: frames of the evaluated set whose fixations are the negatives
    n_splits: int = 100
    step: float = 0.1
    # Whose built-ins to reproduce where MATLAB and GNU Octave differ: imresize's weights when
    # shrinking by a non-integer factor (Octave does not normalise them) and the last bit of some
    # s-AUC thresholds (the colon operator). "matlab" produced the published scores; "octave" is for
    # checking against the benchmark's code run in GNU Octave.
    builtins: str = "matlab"
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


def read_prediction(path: Path) -> np.ndarray:
    """A prediction as the benchmark reads it: ``double(imread(path))``, first channel; 2-D array.

    Grey PNGs (8 or 16 bit) are read as they are; colour ones give their first (red) channel, as
    ``result(:,:,1)`` in ``evaluationFunc.m``; palette images are expanded to RGB first.
    """
    try:
        with Image.open(path) as image:
            if image.mode == "P":
                image = image.convert("RGB")
            if len(image.getbands()) > 1:
                image = image.getchannel(0)
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


_SHARED: FixationPool | None = None


def _init_worker(shared: FixationPool) -> None:
    global _SHARED
    _SHARED = shared


def _frame_rng(seed: int, video: int, frame: int) -> np.random.Generator:
    return np.random.default_rng([seed, video, frame])


def _matlab_round(x: np.ndarray) -> np.ndarray:
    """MATLAB's ``round`` (half away from zero) for x >= 0, exact (``floor(x + 0.5)`` is not)."""
    r = np.floor(x)
    return r + (x - r >= 0.5)


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
        x = _matlab_round((idx % w0 + 1) * (h / h0))  # 1-based column times the height ratio
        y = _matlab_round((idx // w0 + 1) * (w / w0))  # 1-based row times the width ratio
        keep = (x >= 1) & (x <= w) & (y >= 1) & (y <= h)  # checkBounds.m
        parts.append(((y[keep] - 1) * w + (x[keep] - 1)).astype(np.int64))
    flat = np.unique(np.concatenate(parts))  # the union map of makeFixationMap.m
    return np.stack([flat // w, flat % w], axis=1)


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
    constant: int = 0  # frames whose (resized) prediction is constant


def _score_chunk(chunk: _Chunk) -> _ChunkResult:
    shared = _SHARED
    scores = np.full((len(chunk.preds), len(METRIC_NAMES)), np.nan)
    resized, pred_size, gt_size, constant = 0, None, None, 0
    points = shared.points[chunk.video]
    settings = ScoringSettings(shared.n_splits, shared.step, jitter=True, rules="dhf1k", colon=shared.builtins)
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
            pred = np.zeros(shape, np.uint8)  # missing: an all-zero map, as a black PNG
        else:
            pred = read_prediction(pred_path)
            if pred.shape != shape:
                if pred_size is None:
                    pred_size, gt_size = pred.shape, shape
                resized += 1
                pred = imresize(pred, shape, flavour=shared.builtins)
        constant += bool(pred.min() == pred.max())
        rng = _frame_rng(shared.seed, chunk.video, frame)
        other = shuffled_negatives(shared, shape, rng) if fixations is not None else None
        values = score_frame(pred, gt_map, fixations, other, settings, seed=rng)
        scores[i] = [values[m] for m in METRIC_NAMES]
    return _ChunkResult(chunk.video, chunk.start, scores, resized, pred_size, gt_size, constant)


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
        c = self.report["counts"]
        return (f"evaluate: {c['videos']} videos, {c['frames']} frames in {self.seconds:.1f} s "
                f"({self.frames_per_second:.1f} frames/s, {self._workers()}); "
                f"{c['missing_frames']} frames without a prediction, {c['resized_frames']} resized, "
                f"{c['constant_predictions']} constant")


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
    return max(1, min(MAX_WORKERS, usable_cpus()))


def _run(fn, tasks: list, workers: int, shared: FixationPool, on_result) -> None:
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
    if config.protocol not in PROTOCOLS:
        raise EvaluateError(f"unknown protocol {config.protocol!r}; the protocols are {', '.join(PROTOCOLS)}")
    if config.builtins not in BUILTINS:
        raise EvaluateError(f"unknown builtins {config.builtins!r}; choose one of {', '.join(BUILTINS)}")
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
                         "as all-zero maps")
        elif p.missing:
            shown = ", ".join(f"{n}.png" for n in p.missing[:5]) + (", ..." if len(p.missing) > 5 else "")
            notes.append(f"{p.video_id}: {len(p.missing)} of {p.frames} frames without a prediction ({shown}): "
                         "scored as all-zero maps")
        if p.extra_predictions:
            notes.append(f"{p.video_id}: {p.extra_predictions} prediction files match no ground-truth frame: ignored")
    if extra["unused_prediction_folders"]:
        unused = extra["unused_prediction_folders"]
        notes.append(f"{len(unused)} prediction folders are not videos of the evaluated set: ignored "
                     f"({', '.join(unused[:5])}{', ...' if len(unused) > 5 else ''})")
    workers = default_workers(total) if config.workers is None else max(1, config.workers)
    say(f"evaluate: {len(plans)} videos, {total} frames of {config.dataset} (layout {layout}, split "
        f"{config.split}) against {predictions}, {workers} worker{'s' if workers > 1 else ''}")
    start = time.perf_counter()

    # Pass 1: every fixation map, as points (s-AUC negatives, and each frame's own fixations).
    points: list = [None] * len(plans)
    with_fixations = [p for p in plans if any(f is not None for f in p.fixation_files)]
    empty_shared = FixationPool([], np.empty(0, np.int32), np.empty(0, np.int32), config.seed, config.other_frames,
                           config.n_splits, config.step, config.builtins)
    if with_fixations:
        progress = Progress("evaluate: fixation maps", total=sum(p.frames for p in with_fixations), unit="maps")

        def got_points(p: VideoPlan, result) -> None:
            points[p.index] = result
            progress.update(p.frames, note=p.video_id)

        _run(_read_fixations_task, with_fixations, workers, empty_shared, got_points)
        progress.close()
    # s-AUC's pool: every frame with a fixation map, those without a fixation included (they add no
    # point when drawn), as evaluationFunc.m draws from every frame of the set.
    pool_video, pool_frame = [], []
    no_fixation = {p.index: 0 for p in plans}
    for p in plans:
        if points[p.index] is not None:
            _, offsets, shapes = points[p.index]
            frames = np.flatnonzero(shapes[:, 0] > 0)
            pool_video.extend([p.index] * frames.size)
            pool_frame.extend(frames.tolist())
            no_fixation[p.index] = int(np.count_nonzero(np.diff(offsets)[frames] == 0))
    if not with_fixations:
        notes.append("no binary fixation maps in the evaluated set: AUC-J, s-AUC and NSS are NaN")
    if not any(f is not None for p in plans for f in p.map_files):
        notes.append("no continuous maps in the evaluated set: CC, SIM and KLD are NaN")
    shared = FixationPool(points, np.asarray(pool_video, np.int32), np.asarray(pool_frame, np.int32), config.seed,
                     config.other_frames, config.n_splits, config.step, config.builtins)

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
    constant = {p.index: 0 for p in plans}
    progress = Progress("evaluate", total=total, unit="frames")

    def got_scores(chunk: _Chunk, result: _ChunkResult) -> None:
        scores[result.video][result.start:result.start + len(result.scores)] = result.scores
        constant[result.video] += result.constant
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
                         f"resized (bicubic, as MATLAB's imresize)")
    n_constant = sum(constant.values())
    if n_constant:
        notes.append(f"{n_constant} of {total} frames have a constant prediction: NSS, CC and s-AUC are NaN there "
                     "and, as in the benchmark's code, left out of their means (see 'NaN frames dropped')")
    report = _report(config, layout, plans, extra, scores, resized, constant, no_fixation, notes, workers, seconds)
    result = EvaluateResult(report, label, seconds, total, {p.video_id: scores[p.index] for p in plans})
    for note in notes:
        say(f"evaluate: {note}")
    if config.json_path:
        path = Path(config.json_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(report, indent=1, allow_nan=False) + "\n")
        except OSError as error:
            raise EvaluateError(f"{path}: cannot write the scores ({error.strerror or error})") from None
    say(result.line())
    return result


def _read_fixations_task(p: VideoPlan):
    return _read_fixations(p.fixation_files)


def _report(config, layout, plans, extra, scores, resized, constant, no_fixation, notes, workers, seconds) -> dict:
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
            "nan_frames": {m: p.frames - counts[m] for m in METRIC_NAMES},
            "constant_predictions": constant[p.index],
            "frames_without_fixations": no_fixation[p.index],
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
            # frames left out of each metric's mean because it is NaN there (no ground truth of that
            # kind, no fixation in the frame, a constant prediction...), as the benchmark drops them
            "nan_frames": {m: total - frame_counts[m] for m in METRIC_NAMES},
            "constant_predictions": sum(constant.values()),
            "frames_without_fixations": sum(no_fixation.values()),
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
            "scored_as": "all-zero prediction" if n_missing else None,
            "extra_prediction_files": sum(p.extra_predictions for p in plans),
            "unused_prediction_folders": extra["unused_prediction_folders"],
        },
        "protocol": config.protocol,
        "seed": config.seed,
        "settings": {
            "predictions": str(Path(config.predictions).resolve()),
            "dataset": str(Path(config.dataset).resolve()),
            "layout": layout,
            "split": config.split,
            "videos": config.videos,
            "allow_missing": config.allow_missing,
            "baseline": ({"name": config.baseline, "sigma": config.center_sigma} if config.baseline else None),
            "prediction": "first channel of the PNG, as double(imread(...))(:,:,1)",
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
        },
        "timing": {"seconds": round(seconds, 3), "frames_per_second": round(total / seconds, 2) if seconds else None},
        "videos": videos,
        "notes": notes,
    }
