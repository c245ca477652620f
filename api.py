"""The library's front: `load` gives a `Predictor` (maps in memory), and each command of the command line
is a function (`extract`, `train_decoder`, `predict`, `evaluate`, `info`). `import sal3d` re-exports
them all; see the package's docstring for an example."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

__all__ = ["Predictor", "compare", "evaluate", "extract", "import_keras", "info", "load", "predict", "train_decoder"]


class Predictor:
    """A trained decoder with its trunk, ready to predict; made by `load`.

    Frames go through the trunk a batch at a time and the decoder sees one window per frame (the
    window rule of DESIGN.md section 1), so memory stays bounded whatever the video's length. The
    maps equal what ``sal3d predict`` writes for the same checkpoint and post-processing options,
    before the 8-bit rounding.
    """

    def __init__(self, checkpoint: str | Path, weights: str | None = None, device: str = "auto",
                 batch_size: int | None = None, size: str = "original", blur: float = 0.0, rescale: bool = True):
        from sal3d.pipeline.checkpoint import CheckpointError, load_checkpoint
        from sal3d.pipeline.contract import fingerprint_mismatch
        from sal3d.pipeline.device import resolve_device
        from sal3d.pipeline.inference import MapDecoder
        from sal3d.pipeline.postprocess import PostProcess
        from sal3d.pipeline.trunk import TRUNK_BATCH, TrunkRunner, load_trunk, preset_of, weights_for

        path = Path(checkpoint)
        saved = load_checkpoint(path)
        checkpoint_trunk = saved["config"]["trunk"]
        trunk = load_trunk(weights_for(checkpoint_trunk, weights), preset_of(checkpoint_trunk))
        mismatch = fingerprint_mismatch(checkpoint_trunk, trunk.fingerprint)
        if mismatch:
            raise CheckpointError(f"{path}: trained on features of another trunk than --weights gives "
                                  f"(checkpoint vs trunk: {mismatch})")
        self.device = resolve_device(device)
        self.options = PostProcess(size, blur, rescale)
        # Frames per trunk batch as extract runs them, windows per decoder batch as predict does: the
        # same batches give the same numbers as the two commands.
        self.decoder = MapDecoder.load(saved, path, self.device, self.options, batch_size)
        self.runner = TrunkRunner(trunk, self.device)
        self.trunk_batch = TRUNK_BATCH

    def predict_video(self, path: str | Path) -> Iterator[np.ndarray]:
        """Maps of a video file (or a folder of frame images), one per frame, in order: float32 (H, W)
        in [0, 1] at the frame's size (224x224 with ``size="224"``)."""
        from sal3d.pipeline.datasets import VideoEntry, image_files
        from sal3d.pipeline.frames import FrameReader

        path = Path(path)
        entry = VideoEntry(path.stem, path, frames=tuple(image_files(path)) if path.is_dir() else ())
        reader = FrameReader(entry, self.runner.preprocessing)
        info = reader.info()
        height, width = self.options.output_size(info.height, info.width)
        stream = (reader.read(start, min(start + self.trunk_batch, info.frame_count))
                  for start in range(0, info.frame_count, self.trunk_batch))
        yield from self._maps(stream, height, width)

    def predict_frames(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames, in order -> (T, H, W) float32 maps in [0, 1] (224x224 with
        ``size="224"``); the window rule applies over the given sequence (its first frame starts it)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        height, width = self.options.output_size(*frames.shape[1:3])
        stream = (self.runner.preprocessing.resize_all(frames[start:start + self.trunk_batch])
                  for start in range(0, len(frames), self.trunk_batch))
        maps = list(self._maps(stream, height, width))
        return np.stack(maps) if maps else np.zeros((0, height, width), np.float32)

    def stream(self, frames: Iterable[np.ndarray], *, max_batch: int | None = None,
               max_latency: float | None = None, source_size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """Maps of frames as they come: any iterable of uint8 (H, W, 3) RGB frames (a list, a generator, a
        live `pipeline.stream_source.FrameStream` that blocks between frames) -> one float32 (H, W) map
        in [0, 1] per frame (224x224 with ``size="224"``), in order, each as soon as its window exists.

        The window rule is predict_frames': frame t needs frames t-5..t, and the iterable's first frame
        starts the video. The state between batches is the last five frames' features, so memory does
        not grow with the stream. Frames are pulled in a background thread into a queue of at most
        max(2, max_batch) frames (a source faster than the trunk is held back, not buffered), and go
        through the trunk in batches of up to `max_batch` frames (default: the trunk batch of
        predict_frames): fewer when the next frame is not already waiting and waiting for it would make
        the batch's oldest frame wait beyond `max_latency` seconds (from when the iterable gave it to
        its map, the batch's compute estimated from the batches so far; None: no bound). The maps equal
        predict_frames' on the same frames within one grey level (1/255; batches of other sizes differ
        in the last bits). ValueError when a frame is not uint8 (H, W, 3) or not the first frame's size
        (naming its index); an error of the iterable reaches the caller after the maps of the frames
        before it. Closing the generator stops the background thread.

        source_size: (H, W) of the source when the frames given are already resized for the trunk (e.g.
        224x224 frames that ffmpeg scaled as decord does, `pipeline.stream_source.open_stream`'s
        ``size``): the maps are made at the size ``size`` gives for it; None: the frames' own size.
        """
        from sal3d.pipeline.frame_feed import FrameFeed

        max_batch = self.trunk_batch if max_batch is None else int(max_batch)
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_latency is not None and max_latency <= 0:
            raise ValueError(f"max_latency must be > 0 seconds, got {max_latency}")
        with FrameFeed(frames, self.runner.preprocessing.resize, capacity=max(2, max_batch)) as feed:
            batches = feed.batches(max_batch, max_latency)
            first = next(batches, None)
            if first is None:
                return
            height, width = self.options.output_size(*(source_size or feed.frame_shape[:2]))
            yield from self._maps(itertools.chain([first], batches), height, width)

    def _maps(self, batches: Iterator[np.ndarray], height: int, width: int) -> Iterator[np.ndarray]:
        """Maps of consecutive 224x224 frame batches (n, 224, 224, 3): the trunk per batch, then the
        decoder (`MapDecoder.stream`), float32 (height, width) per frame."""
        return self.decoder.stream((self.runner(frames) for frames in batches), height, width)


def load(checkpoint: str | Path, *, weights: str | None = None, device: str = "auto", **options) -> Predictor:
    """A `Predictor` for a checkpoint that ``sal3d train-decoder`` wrote.

    weights: the trunk's weights (imagenet, random or a state_dict file; for a checkpoint of the
        keras-3dsal trunk preset, Keras' VGG16 weights file); by default the ones the checkpoint's
        trunk fingerprint names. The trunk preset is the checkpoint's; a trunk other than the
        checkpoint's is refused.
    device: auto, cpu, cuda, cuda:N or mps.
    options: ``sal3d predict``'s post-processing and batch options: size ("original" or "224"),
        blur (sigma in pixels of the map), rescale (min-max per frame, default True), batch_size.
    """
    return Predictor(checkpoint, weights=weights, device=device, **options)


def extract(dataset: str | Path, store: str, **options):
    """``sal3d extract DATASET STORE``; options as its flags (layout, split, videos, trunk, weights, device,
    batch_size, max_frames, workers, writers, scheduler). Returns the `ExtractSummary` (done, skipped,
    failed: video id -> reason, frames, seconds)."""
    from sal3d.stages.extract import ExtractConfig, extract as run

    return run(ExtractConfig(dataset=Path(dataset), store=str(store), **options))


def train_decoder(store: str, run_dir: str | Path, **options):
    """``sal3d train-decoder STORE RUN_DIR``; options as its flags (epochs, lr, batch_size, max_steps,
    steps_per_epoch, select_by, resume, device, ...; ``checkpoint_minutes`` as the flag, ``val_windows=0``
    for all). With ``resume=True`` the options given must match the run's, as on the command line.
    Returns the `TrainSummary` (best_path, best_epoch, best_validation, steps, ...)."""
    from sal3d.stages.train import TrainConfig, train

    if "checkpoint_minutes" in options:
        options["checkpoint_seconds"] = 60.0 * options.pop("checkpoint_minutes")
    if options.get("val_windows") == 0:
        options["val_windows"] = None
    config = TrainConfig(store=str(store), run_dir=Path(run_dir), **options)
    return train(config, explicit=set(options))


def predict(source: str | Path, checkpoint: str | Path, out_dir: str | Path, **options):
    """``sal3d predict SOURCE CHECKPOINT OUT_DIR``: PNG maps on disk; options as its flags (videos,
    split, layout, size, blur, rescale, overlay, device, batch_size, weights, cache, max_frames; for a
    stream SOURCE also name, maps_out, drop_late, max_batch, max_latency, stall_timeout). Returns the
    `PredictSummary` (a stream SOURCE's: `stages.predict_stream.StreamSummary`)."""
    from sal3d.stages.predict import PredictConfig, predict as run

    return run(PredictConfig(source=str(source), checkpoint=Path(checkpoint), out_dir=Path(out_dir), **options))


def evaluate(predictions: str | Path, dataset: str | Path, **options) -> dict:
    """``sal3d evaluate PRED_DIR DATASET_DIR``; options as its flags (layout, split, videos, seed,
    allow_missing, workers, baseline, ``json`` for the file to write). Returns the scores dict that
    ``--json`` writes (frame means per metric, ``video_mean``, ``videos``: the scores per video, counts
    and settings)."""
    from sal3d.stages.evaluate import EvaluateConfig, evaluate as run

    if "json" in options:
        options["json_path"] = options.pop("json")
    return run(EvaluateConfig(predictions=Path(predictions), dataset=Path(dataset), **options)).report


def compare(dataset: str | Path, models: dict[str, str | Path] | None = None, **options) -> dict:
    """``sal3d compare DATASET_DIR NAME=PRED_DIR ...``: `models` maps names to prediction folders (in
    order; the first is the reference unless ``reference``); options as its flags (baselines: a tuple
    of "centre", "prior"; reference, layout, split, videos, seed, allow_missing, workers, resamples,
    center_sigma, prior_frames, and ``json``, ``csv``, ``html`` for the files to write). Returns what
    ``--json`` writes: ``{"run", "reference", "bootstrap", "models", "paired", "videos"}`` (see
    `pipeline.comparison.compare`)."""
    from sal3d.stages.compare import CompareConfig, compare as run

    for key in ("json", "csv", "html"):
        if key in options:
            options[f"{key}_path"] = options.pop(key)
    pairs = [(name, Path(folder)) for name, folder in (models or {}).items()]
    return run(CompareConfig(dataset=Path(dataset), models=pairs, **options)).report()


def import_keras(model: str | Path, checkpoint: str | Path) -> dict:
    """``sal3d import-keras MODEL CHECKPOINT``: the authors' published Keras model (a full-model HDF5) as a
    sal3d checkpoint that `load` and ``sal3d predict`` run with the keras-3dsal trunk. Returns the
    checkpoint's config. A file that is not the authors' decoder is refused (`Sal3dError`)."""
    from sal3d.pipeline.keras_import import import_keras as run

    return run(model, checkpoint)


def info(store: str, *, check: bool = False) -> dict:
    """``sal3d info STORE --json`` as a dict: format version, trunk, videos by state (and why for each
    that is not complete), frames, splits, stored and on-disk bytes. See `stages.info.StoreInfo`."""
    from sal3d.stages.info import InfoConfig, info as run

    return asdict(run(InfoConfig(store=store, check=check)))
