"""Prediction: a decoder checkpoint + cached features -> one 8-bit grey saliency PNG per frame.

Output layout (what the DHF1K benchmark accepts, and what `sal3d evaluate` reads)::

    OUT_DIR/<video id>/<frame name>.png     every frame of every selected video, grey, original size
    OUT_DIR/predict.json                    checkpoint, store, post-processing, runs (see below)
    OUT_DIR/overlays/<video id>/<frame>.png with --overlay: the map drawn over the frame (RGB)
    OUT_DIR/overlays/<video id>.mp4         with --overlay-video: the same, as a video (pipeline.overlay)

Sources. A stream SOURCE ("-" for a container on stdin, a URL, a capture device) goes to
`stages.predict_stream` (its own docstring). Otherwise SOURCE is a feature store (used as is: its videos not complete yet, being written or
interrupted, are named and left out, and listed in the run record's ``left_out``), a dataset
directory or a single video file. For the last two, stage one (`stages.extract`) first caches the
trunk's features in a store next to OUT_DIR (``<OUT_DIR>.features.zarr``, or --cache): a rerun finds
the videos there and runs no trunk.
A single video file ``DIR/NAME.EXT`` is extracted as the ``videos`` layout of DIR restricted to
NAME, so its id (and prediction folder) is NAME and its frames are ``0001.png ...``. The trunk
preset and weights for extraction come from the checkpoint's trunk fingerprint (``imagenet:...`` ->
imagenet, ``random:seed=0`` -> random) unless --weights says otherwise (needed for ``file:NAME``
trunks and for the keras-3dsal preset's Keras weights file); the loaded trunk must match the
checkpoint's fingerprint before anything is extracted.

Model. The window and weighting rule are `pipeline.windows`' with the checkpoint's coefficients;
a store whose trunk fingerprint differs from the checkpoint's is refused. The decoder runs in bf16
on a GPU (fp32 on CPUs without native bf16, `compute_dtype`), except its final sigmoid, computed
in fp32 so that an 8-bit map keeps its grey levels. Each video's features are read in runs of
consecutive frames (a background thread reads the next run while the decoder works) and decoded
by `pipeline.inference.MapDecoder`, as the library's `Predictor` decodes: the windows of a batch
are cut from the run with `gather_windows` on the device and post-processing (`pipeline.postprocess`:
resize, optional blur, rescale) runs batched on the device; a pool of threads encodes and writes
the PNGs while the decoder computes the next batch. What each video still lacks, and the overlays,
are `pipeline.predictions`'.

Resume. Every PNG is written to a hidden temporary name and renamed into place, so a PNG under
its final name is always complete. A rerun predicts only the frames whose PNG (and overlay, with
--overlay) is missing -- a complete video costs one directory listing -- and removes temporary
files a killed run left. An overlay video (--overlay-video) is encoded, after the maps, from the
map PNGs and the source frames, under a temporary name too, when it is missing. Because existing
PNGs are trusted, an OUT_DIR holds the maps of one set of settings only: predict.json records them
(checkpoint sha256, trunk, weighting, post-processing) and a rerun with different settings is
refused; overlays are not settings of the maps (remove OUT_DIR/overlays to redraw them otherwise).

Failures. A video that cannot be predicted fails alone, named with the reason in the summary and in
predict.json's run record, and the others go on (the exit status says something failed): a video
stage one could not extract, one whose stored chunks do not match its record (checked before any
decoding), and one whose chunk fails its checksum as it is read (a chunk altered but not resized
passes the check), or one whose decoded maps come out NaN or infinite (non-finite features: a blank
PNG is never written for them). For the last two, the PNGs written before the failing frames stay
(they were decoded from good chunks); those frames and every later one have none, so the video's
folder is incomplete and a rerun tries them again.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from sal3d.pipeline.atomic import write_text_atomic
from sal3d.pipeline.checkpoint import check_decoder_weights, load_checkpoint, window_rule
from sal3d.pipeline.contract import fingerprint_mismatch
from sal3d.pipeline.datasets import OVERLAY_DIR, VIDEO_EXTENSIONS, VideoEntry, discover
from sal3d.pipeline.device import compute_dtype, resolve_device
from sal3d.pipeline.identity import file_sha256
from sal3d.pipeline.inference import CPU_BATCH, GPU_BATCH, MapDecoder, NonFiniteMaps, decoder_batch
from sal3d.pipeline.overlay import DEFAULT_ALPHA, DEFAULT_COLORMAP, DEFAULT_THRESHOLD, OverlayStyle
from sal3d.pipeline.postprocess import PostProcess, write_png
from sal3d.pipeline.predictions import (
    PredictError,
    VideoPlan,
    default_png_writers,
    overlay_batch,
    overlay_video_path,
    plan_video,
    write_overlay_videos,
)
from sal3d.pipeline.progress import Progress, say
from sal3d.pipeline.store import FEATURE_COMPATIBLE_VERSIONS, DamagedVideo, FeatureStore
from sal3d.pipeline.store.unfinished import unfinished_videos
from sal3d.pipeline.stream_source import is_stream_source
from sal3d.pipeline.trunk import load_trunk, preset_of, quiet_random_warning, weights_for
from sal3d.pipeline.windows import DEFAULT_WINDOW_RULE, WEIGHTINGS, WINDOW_RULES, frames_needed

PREDICT_JSON = "predict.json"
FORMAT = "sal3d-predictions/1"
#: Frames of a video's timeline read from the store at once (rounded up to whole batches).
RUN_FRAMES = 128


@dataclass
class PredictConfig:
    """Everything `sal3d predict` was asked; see its --help."""

    source: str
    checkpoint: Path
    out_dir: Path | None  # None only for a stream SOURCE with --maps-out
    videos: list[str] | None = None
    split: str = "all"
    layout: str = "auto"
    size: str = "original"
    blur: float = 0.0
    rescale: bool = True
    overlay: bool = False
    device: str = "auto"
    batch_size: int | None = field(default=None, metadata={  # windows per decoder batch
        "auto": f"{GPU_BATCH} on a GPU, {CPU_BATCH} on a CPU"})
    weights: str | None = field(default=None, metadata={  # trunk weights for a dataset/video SOURCE
        "auto": "the checkpoint's trunk"})
    cache: str | None = field(default=None, metadata={  # feature store for a dataset/video SOURCE
        "auto": "OUT_DIR.features.zarr next to OUT_DIR"})
    writers: int | None = None  # PNG writer threads; None: default_png_writers()
    max_frames: int | None = None  # a dataset/video SOURCE: extract at most this many frames of each video
    overlay_video: bool = False  # OUT_DIR/overlays/<video id>.mp4
    overlay_alpha: float = DEFAULT_ALPHA  # how the overlays look: pipeline.overlay.OverlayStyle
    overlay_threshold: float = DEFAULT_THRESHOLD
    overlay_colormap: str = DEFAULT_COLORMAP
    # A stream SOURCE only (stages.predict_stream):
    name: str | None = field(default=None, metadata={"auto": "stdin for -, else from the URL or device"})
    maps_out: str | None = None  # "-": raw uint8 maps on stdout (or a file / FIFO path)
    drop_late: bool = False  # keep only the newest frames when the model falls behind
    max_batch: int | None = field(default=None, metadata={"auto": "the trunk batch"})  # frames per trunk batch
    max_latency: float | None = None  # seconds a frame may wait for its batch (None: no bound)
    stall_timeout: float = 10.0  # seconds without a frame before the stream is given up


@dataclass
class PredictSummary:
    predicted: list[str] = field(default_factory=list)  # videos with frames predicted by this run
    skipped: list[str] = field(default_factory=list)  # videos whose PNGs were all present
    failed: dict[str, str] = field(default_factory=dict)  # video id -> why (stage one, store check, read)
    frames: int = 0  # frames decoded and written by this run
    seconds: float = 0.0  # the decoder phase: first feature read to last PNG written
    extract_frames: int = 0
    extract_seconds: float = 0.0
    total_seconds: float = 0.0  # everything, extraction and model loading included
    overlay_videos: list[str] = field(default_factory=list)  # videos whose overlay video this run wrote
    left_out: dict[str, str] = field(default_factory=dict)  # a store SOURCE's incomplete videos -> why

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self, out_dir: Path) -> str:
        text = (f"predict: {len(self.predicted)} videos predicted, {len(self.skipped)} already complete, "
                f"{len(self.failed)} failed; {self.frames} frames in {self.seconds:.1f} s "
                f"({self.frames_per_second:.2f} frames/s) -> {out_dir}")
        if self.overlay_videos:
            text += f"\npredict: {len(self.overlay_videos)} overlay videos -> {out_dir / OVERLAY_DIR}/<video>.mp4"
        if self.extract_frames:
            text += (f"\npredict: end to end with stage one ({self.extract_frames} frames extracted in "
                     f"{self.extract_seconds:.1f} s): {self.total_seconds:.1f} s")
        return text


# ---------------------------------------------------------------------------- sources and checks


def is_stream(source: str) -> bool:
    """Whether predict reads `source` as a stream: "-", a URL other than a store's ``.zarr``, a capture
    device (`is_stream_source`)."""
    return is_stream_source(source) and not source.rstrip("/").endswith(".zarr")


def source_kind(source: str) -> str:
    """``stream`` (`is_stream`), ``store``, ``dataset`` or ``video`` (a single video file); PredictError for
    a path that is none of them."""
    if is_stream(source):
        return "stream"
    path = Path(source)
    if path.is_file():
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            return "video"
        raise PredictError(f"{source}: a file that is not a video ({', '.join(VIDEO_EXTENSIONS)})")
    if path.is_dir():
        return "store" if (path / "zarr.json").is_file() else "dataset"
    if "://" in source:
        return "store"  # an fsspec URL
    raise PredictError(f"{source}: no such feature store, dataset directory or video file")


def default_cache(out_dir: Path) -> Path:
    """Where a dataset/video SOURCE's features are cached: next to OUT_DIR, not inside it."""
    out_dir = Path(out_dir).resolve()
    return out_dir.parent / f"{out_dir.name}.features.zarr"


def check_trunk(checkpoint_path: Path, checkpoint_trunk: dict, what: str, found: dict) -> None:
    """Refuse features made by another trunk than the checkpoint's; the message names both."""
    mismatch = fingerprint_mismatch(checkpoint_trunk, found)
    if mismatch:
        raise PredictError(f"{what} was made with another trunk than checkpoint {checkpoint_path} was trained "
                           f"on; refusing to mix them (checkpoint vs {what}: {mismatch})")


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------- stage one for a dataset/video


def _prepare_cache(config: PredictConfig, kind: str, checkpoint_trunk: dict, summary: PredictSummary):
    """Extract what the cache store lacks; returns (store, {video id: entry}, selected ids)."""
    from sal3d.stages.extract import ExtractConfig, extract  # noqa: PLC0415 (only dataset/video sources need it)

    path = Path(config.source)
    if kind == "video":
        root, layout, split, videos = path.parent, "videos", "all", [path.stem]
        if config.videos and list(config.videos) != [path.stem]:
            raise PredictError(f"{path}: a single video file is video {path.stem!r}; --videos does not apply")
    else:
        root, layout, split, videos = path, config.layout, config.split, config.videos
    layout, entries = discover(root, layout, split, videos)
    if not entries:
        raise PredictError(f"{root}: no videos selected (layout {layout}, split {split})")
    cache = str(config.cache or default_cache(config.out_dir))
    existing = FeatureStore(cache, mode="r") if Path(cache).exists() else None
    if existing is not None:
        cached_root = existing.attrs.get("dataset")
        if cached_root and Path(cached_root) != root.resolve():
            raise PredictError(f"cache store {cache} holds features of {cached_root}, not {root.resolve()}: "
                               "choose another --cache (or OUT_DIR)")
        check_trunk(config.checkpoint, checkpoint_trunk, f"cache store {cache}", existing.fingerprint)
    todo = [e for e in entries if existing is None or existing.state(e.video_id)[0] != "complete"]
    if todo:
        weights, preset = weights_for(checkpoint_trunk, config.weights), preset_of(checkpoint_trunk)
        with quiet_random_warning():
            trunk = load_trunk(weights, preset)
        check_trunk(config.checkpoint, checkpoint_trunk, f"trunk --weights {weights}", trunk.fingerprint)
        say(f"predict: stage one for {len(todo)} of {len(entries)} videos into the cache {cache}")
        extracted = extract(ExtractConfig(dataset=root, store=cache, layout=layout, split="all",
                                          videos=[e.video_id for e in todo], trunk=preset, weights=weights,
                                          device=config.device, max_frames=config.max_frames), trunk)
        del trunk
        summary.failed.update(extracted.failed)
        summary.extract_frames, summary.extract_seconds = extracted.frames, extracted.seconds
    else:
        say(f"predict: all {len(entries)} videos already in the cache {cache}")
    store = FeatureStore(cache, mode="r")
    selected = [e.video_id for e in entries if e.video_id not in summary.failed and store.is_complete(e.video_id)]
    return store, {e.video_id: e for e in entries}, selected


def _select_from_store(store: FeatureStore, config: PredictConfig, summary: PredictSummary) -> list[str]:
    """The ids of the store's videos to predict; those left out as not complete yet (being written,
    interrupted) are said, with why, and kept in `summary.left_out`."""
    videos = store.complete_videos()
    complete = list(videos)
    if config.videos:
        everything = set(store.video_ids(complete_only=False))
        unknown = [v for v in config.videos if v not in everything]
        if unknown:
            shown = ", ".join(complete[:10]) + (" ..." if len(complete) > 10 else "")
            raise PredictError(f"{store.location}: no video {', '.join(unknown)} in the store (it has {shown})")
        partial = unfinished_videos(store, [v for v in config.videos if v not in complete])
        if partial:
            raise PredictError(f"{store.location}: " + "; ".join(f"video {v} is not complete in the store ({why})"
                                                                 for v, why in partial.items())
                               + "; let sal3d extract finish it (rerun it for an interrupted one)")
        selected = list(dict.fromkeys(config.videos))
    else:
        selected = complete
        summary.left_out = unfinished_videos(store)
        for video_id, why in summary.left_out.items():
            say(f"predict: not predicted: {video_id} (not complete in the store: {why})")
    if config.split != "all":
        selected = [v for v in selected if videos[v].split == config.split]
    if not selected:
        raise PredictError(f"{store.location}: no complete videos selected" +
                           (f" in split {config.split}" if config.split != "all" else ""))
    return selected


def _store_source(store: FeatureStore, video_id: str, attrs: dict) -> Path | None:
    root, relative = store.attrs.get("dataset"), attrs.get("source")
    return Path(root) / relative if root and relative else None


# ---------------------------------------------------------------------------- predict.json


def _settings(checkpoint: dict, sha256: str, coefficients: list[float], options: PostProcess) -> dict:
    config = checkpoint["config"]
    return _json_safe({
        "checkpoint_sha256": sha256,
        "trunk": config["trunk"],
        "weighting": config["weighting"],
        "coefficients": coefficients,
        "window": WINDOW_RULES[config.get("window_rule", DEFAULT_WINDOW_RULE)],  # checked by _open_checkpoint
        "postprocess": options.record(),
    })


def _write_json(path: Path, record: dict) -> None:
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def _open_record(out_dir: Path, settings: dict) -> dict:
    path = out_dir / PREDICT_JSON
    if not path.is_file():
        return {"format": FORMAT, "settings": settings, "videos": {}, "runs": []}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PredictError(f"{path}: unreadable ({error}); remove it or choose another OUT_DIR") from None
    old = record.get("settings", {})
    if old != settings:
        keys = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        raise PredictError(f"{out_dir} holds predictions made with other settings (differing: {', '.join(keys)}; "
                           f"see {path}); its PNGs would be mixed with these: choose another OUT_DIR or remove it")
    record.setdefault("videos", {})
    record.setdefault("runs", [])
    return record


# ---------------------------------------------------------------------------- the stage


def predict(config: PredictConfig) -> PredictSummary:
    """Run prediction as configured; returns the summary. Raises PredictError (and the CheckpointError,
    StoreError, DatasetError, TrunkWeightsError of the parts) for what cannot be run at all. A stream
    SOURCE runs `stages.predict_stream.predict_stream` (its summary is a `StreamSummary`)."""
    if is_stream(str(config.source)):  # a file SOURCE is checked after the checkpoint, in _open_source
        from sal3d.stages.predict_stream import predict_stream  # noqa: PLC0415

        return predict_stream(config)
    if config.out_dir is None:
        raise PredictError(f"{config.source}: OUT_DIR is needed (only a stream SOURCE can do with --maps-out alone)")
    begin = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    summary = PredictSummary()
    options = PostProcess(config.size, float(config.blur), bool(config.rescale))
    style = OverlayStyle(config.overlay_colormap, float(config.overlay_alpha), float(config.overlay_threshold))
    checkpoint_path = Path(config.checkpoint)
    checkpoint, coefficients = _open_checkpoint(checkpoint_path)
    ck_config = checkpoint["config"]
    out_dir = Path(config.out_dir)
    device = resolve_device(config.device)
    # Refuse an OUT_DIR of other settings before any work (stage one included).
    settings = _settings(checkpoint, file_sha256(checkpoint_path), coefficients, options)
    record = _open_record(out_dir, settings)

    kind, store, entries, selected = _open_source(config, checkpoint_path, ck_config["trunk"], summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    plans, videos_todo = _plans(config, store, entries, selected, options, summary.failed)
    summary.skipped = [p.video_id for p in plans if p.complete]
    work = [p for p in plans if not p.complete]
    total = int(sum(len(p.todo) for p in work))
    dtype = compute_dtype(device)
    batch = config.batch_size or decoder_batch(device)
    writers = config.writers or default_png_writers()

    run = {
        "started": started, "source": str(config.source), "source_kind": kind,
        "store": {"location": store.location, "format_version": store.attrs.get("format_version"),
                  "cache": kind != "store"},
        "checkpoint": {"path": str(checkpoint_path.resolve()), "sha256": settings["checkpoint_sha256"],
                       "config": _json_safe(ck_config)},
        "device": str(device), "dtype": str(dtype).removeprefix("torch."), "batch_size": batch,
        "overlay": bool(config.overlay), "videos": [p.video_id for p in work], "complete": False,
        "overlay_video": bool(config.overlay_video),
        "overlay_style": style.record() if config.overlay or config.overlay_video else None,
    }
    record.update({"checkpoint": run["checkpoint"], "store": run["store"]})
    record["runs"].append(run)
    for plan in plans:
        record["videos"][plan.video_id] = {"frames": plan.frame_count, "height": plan.height, "width": plan.width}
    _write_json(out_dir / PREDICT_JSON, record)

    say(f"predict: {len(plans)} videos, {len(summary.skipped)} already complete, {total} frames to predict "
        f"on {device} ({run['dtype']}, batches of {batch}) -> {out_dir}")
    if work:
        decoder = MapDecoder.load(checkpoint, checkpoint_path, device, options, batch, eight_bit=True) if total else None
        del checkpoint
        DecoderRun(store, decoder, batch, writers, summary, style)(work, total)
    summary.predicted = [p.video_id for p in work if p.video_id not in summary.failed]
    videos_todo = [p for p in videos_todo if p.video_id not in summary.failed]  # their maps are incomplete
    if videos_todo:
        run["overlay_video_codecs"] = write_overlay_videos(videos_todo, store, out_dir, style)
        summary.overlay_videos.extend(run["overlay_video_codecs"])
    summary.total_seconds = time.perf_counter() - begin
    _finish_run(run, summary)
    _write_json(out_dir / PREDICT_JSON, record)
    say(summary.line(out_dir))
    for video_id, reason in summary.failed.items():
        say(f"predict: failed {video_id}: {reason}")
    return summary


def _open_checkpoint(path: Path) -> tuple[dict, list[float]]:
    """The checkpoint at `path` (its decoder weights checked before anything is written) and its six
    weighting coefficients; a checkpoint trained on features of a store format this sal3d cannot
    read is refused."""
    checkpoint = load_checkpoint(path)
    checkpoint["model"] = check_decoder_weights(path, checkpoint["model"])
    ck_config = checkpoint["config"]
    coefficients = [float(c) for c in ck_config["coefficients"]]
    window_rule(ck_config, path)  # a rule this sal3d does not know is refused before anything is written
    if ck_config.get("store_format_version") not in FEATURE_COMPATIBLE_VERSIONS:
        raise PredictError(f"{path}: trained on store format {ck_config.get('store_format_version')}, this "
                           f"sal3d reads the features of store formats "
                           f"{', '.join(map(str, FEATURE_COMPATIBLE_VERSIONS))}")
    if ck_config["weighting"] in WEIGHTINGS and not np.allclose(coefficients, WEIGHTINGS[ck_config["weighting"]]):
        say(f"predict: note: {path} names weighting {ck_config['weighting']!r} but holds the "
            f"coefficients {coefficients}; using the coefficients")
    return checkpoint, coefficients


def _open_source(config: PredictConfig, checkpoint_path: Path, checkpoint_trunk: dict, summary: PredictSummary):
    """(source kind, store, {video id: dataset entry}, ids of the videos to predict): the store SOURCE, or
    the cache store stage one fills for a dataset/video SOURCE. Videos whose stored chunks do not match
    their record are left out, failed in `summary`, named."""
    kind = source_kind(str(config.source))
    if kind == "store":
        if config.cache:
            raise PredictError("--cache applies to a dataset or video SOURCE, not to a feature store")
        store = FeatureStore(str(config.source), mode="r")
        check_trunk(checkpoint_path, checkpoint_trunk, f"store {store.location}", store.fingerprint)
        selected = _select_from_store(store, config, summary)
        entries: dict[str, VideoEntry] = {}
    else:
        store, entries, selected = _prepare_cache(config, kind, checkpoint_trunk, summary)
        check_trunk(checkpoint_path, checkpoint_trunk, f"cache store {store.location}", store.fingerprint)
        if not selected:
            raise PredictError(f"{config.source}: no video could be extracted "
                               f"({'; '.join(f'{k}: {v}' for k, v in summary.failed.items())})")
    selected, damaged = store.check_videos(selected)  # a damaged video fails alone, named
    summary.failed.update(damaged)
    return kind, store, entries, selected


def _plans(config: PredictConfig, store: FeatureStore, entries: dict[str, VideoEntry], selected: list[str],
           options: PostProcess, failed: dict[str, str]) -> tuple[list[VideoPlan], list[VideoPlan]]:
    """(a plan per selected video, those whose overlay video is asked for and missing); refused when
    overlays are asked for and a video's frames are not found. A video whose record cannot be
    planned is left out, with why, in `failed`."""
    out_dir = Path(config.out_dir)
    plans = []
    for video_id in selected:
        source = entries[video_id].source if video_id in entries else \
            _store_source(store, video_id, store.video_attrs(video_id))
        try:
            plans.append(plan_video(store, video_id, out_dir, options, config.overlay, source))
        except PredictError as error:  # this video's record (e.g. duplicate frame names): it fails alone
            failed[video_id] = str(error)
    videos_todo = [p for p in plans if config.overlay_video and not overlay_video_path(out_dir, p.video_id).exists()]
    if config.overlay or videos_todo:
        lost = [f"{p.video_id} ({p.source})" for p in plans
                if ((config.overlay and not p.complete) or p in videos_todo)
                and (p.source is None or not p.source.exists())]
        if lost:
            raise PredictError("--overlay and --overlay-video need each video's frames, not found for: "
                               + ", ".join(lost[:5]))
    return plans, videos_todo


def _finish_run(run: dict, summary: PredictSummary) -> None:
    """Record in `run` (predict.json's record of this run) that it ended, and what it did."""
    run.update({"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "complete": True,
                "frames": summary.frames, "seconds": round(summary.seconds, 3),
                "frames_per_second": round(summary.frames_per_second, 3),
                "skipped_videos": summary.skipped, "failed": summary.failed, "left_out": summary.left_out,
                "extract_frames": summary.extract_frames, "extract_seconds": round(summary.extract_seconds, 3),
                "total_seconds": round(summary.total_seconds, 3)})


def _runs(plans: list[VideoPlan], run_frames: int):
    """(plan, target frames) per run of consecutive timeline frames that has anything to predict."""
    for plan in plans:
        for start in range(0, plan.frame_count, run_frames):
            targets = plan.todo[(plan.todo >= start) & (plan.todo < start + run_frames)]
            if len(targets):
                yield plan, targets


class DecoderRun:
    """The decoder loop over the videos' runs of frames: features read one run ahead (a thread), windows
    decoded in batches (`MapDecoder`), PNGs (and overlays) written by threads.

    It holds the loop's state: the decoder, the writer pools, the writes in flight (at most `limit`
    before the decoder waits), the folders made and the progress line. `decoder` is None when no frame
    is to be decoded (only overlays of maps an earlier run wrote); `batch` is its windows per batch,
    and frames per overlay batch."""

    def __init__(self, store: FeatureStore, decoder: MapDecoder | None, batch: int, writers: int,
                 summary: PredictSummary, style: OverlayStyle = OverlayStyle()):
        self.store, self.decoder, self.batch, self.summary = store, decoder, batch, summary
        self.pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="png-writer")
        self.overlays = ThreadPoolExecutor(max_workers=1, thread_name_prefix="overlay")
        self.overlay_state: dict = {"style": style}
        self.pending: deque[Future] = deque()
        self.limit = 4 * batch + 2 * writers  # PNG writes in flight before the decoder waits for them
        self.created: set[Path] = set()
        self.progress: Progress | None = None

    def read(self, plan: VideoPlan, targets: np.ndarray) -> tuple[int, np.ndarray]:
        """(first frame, float16 features (n, 512, 14, 14)) of the frames `targets`' windows need."""
        start, stop = frames_needed(targets)
        return start, self.store.features(plan.video_id)[start:stop]

    def __call__(self, plans: list[VideoPlan], total: int) -> None:
        """Predict every missing frame of `plans` (`total` frames in all) and write the overlays asked for."""
        run_frames = math.ceil(max(RUN_FRAMES, self.batch) / self.batch) * self.batch
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-reader")
        self.progress = Progress("predict", total=total, unit="frames")
        start_time = time.perf_counter()
        try:
            for plan in plans:  # overlays of maps an earlier run wrote: no decoder
                if len(plan.overlay_only):
                    plan.overlay_folder.mkdir(parents=True, exist_ok=True)
                for offset in range(0, len(plan.overlay_only), self.batch):
                    frames = plan.overlay_only[offset:offset + self.batch].tolist()
                    self.pending.append(self.overlays.submit(overlay_batch, self.overlay_state, plan, frames, None,
                                                             self.pool))
            ahead: deque = deque()
            for item in _runs(plans, run_frames):
                if item[0].video_id in self.summary.failed:
                    continue  # a chunk of this video failed its checksum in an earlier run
                ahead.append((item, reader.submit(self.read, *item)))
                if len(ahead) >= 2:
                    self.decode(*ahead.popleft())
            while ahead:
                self.decode(*ahead.popleft())
            while self.pending:
                self.pending.popleft().result()
        finally:
            for executor in (reader, self.overlays, self.pool):
                executor.shutdown(wait=True, cancel_futures=True)
            self.progress.close()
        self.summary.seconds = time.perf_counter() - start_time

    def fail(self, plan: VideoPlan, targets: np.ndarray, error: DamagedVideo | NonFiniteMaps) -> None:
        """Give up `plan`'s video, whose frames `targets` could not be read or decoded: it is recorded as
        failed (the other videos go on) and its frames from these on leave the progress total."""
        self.summary.failed[plan.video_id] = str(error)
        self.progress.total -= int(np.count_nonzero(plan.todo >= targets[0]))
        self.progress.update(0, note=f"{plan.video_id} failed")

    def decode(self, item: tuple[VideoPlan, np.ndarray], future: Future) -> None:
        """Decode one run's target frames (`item`: plan, frame indices) from its features (`future`)."""
        plan, targets = item
        if plan.video_id in self.summary.failed:
            return  # read ahead before an earlier run of its video failed
        try:
            first, features = future.result()
        except DamagedVideo as error:
            self.fail(plan, targets, error)
            return
        for folder in (plan.folder, plan.overlay_folder):
            if folder is not None and folder not in self.created:
                folder.mkdir(parents=True, exist_ok=True)
                self.created.add(folder)
        pending, written = self.pending, 0
        try:
            for frames, maps in self.decoder.batches(features, targets, first, plan.height, plan.width):
                for t, saliency in zip(frames.tolist(), maps):
                    pending.append(self.pool.submit(write_png, plan.folder / f"{plan.names[t]}.png", saliency))
                if plan.overlay_folder is not None:
                    pending.append(self.overlays.submit(overlay_batch, self.overlay_state, plan, frames.tolist(),
                                                        maps, self.pool))
                while len(pending) > self.limit or (pending and pending[0].done()):
                    pending.popleft().result()  # raises a writer's error here
                written += len(frames)
                self.summary.frames += len(frames)
                self.progress.update(len(frames), note=plan.video_id)
        except NonFiniteMaps as error:  # no blank PNG for them: the video fails, the maps before stay
            self.fail(plan, targets[written:], error)
