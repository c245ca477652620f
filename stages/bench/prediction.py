"""The prediction figures, each `stages.predict.predict()` as a user runs it with an untrained decoder
(speed only): from a feature store (the decoder phase, PNGs written), and from a video file (stage one
into a fresh cache, then the decoder: all of it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from sal3d.pipeline.checkpoint import save_checkpoint
from sal3d.pipeline.decoder import SaliencyDecoder
from sal3d.pipeline.ffmpeg import trim_video
from sal3d.pipeline.frames import FrameReader
from sal3d.pipeline.inference import CPU_BATCH, GPU_BATCH
from sal3d.pipeline.predictions import default_png_writers
from sal3d.pipeline.store import FORMAT_VERSION, FeatureStore
from sal3d.pipeline.windows import DEFAULT_WEIGHTING, weighting_coefficients
from sal3d.stages.bench.config import BenchError
from sal3d.stages.bench.context import Context
from sal3d.stages.bench.data import video_sizes
from sal3d.stages.bench.report import figure, median, number, skipped
from sal3d.stages.predict import PredictConfig, predict


def write_untrained_decoder(store: Path, path: Path) -> Path:
    """A checkpoint of a freshly initialised decoder (seed 0) for the features of `store`."""
    fingerprint = FeatureStore(str(store)).fingerprint
    torch.manual_seed(0)
    save_checkpoint(path, {"model": SaliencyDecoder().state_dict(), "config": {
        "weighting": DEFAULT_WEIGHTING, "coefficients": list(weighting_coefficients(DEFAULT_WEIGHTING)),
        "trunk": fingerprint, "store_format_version": FORMAT_VERSION, "epoch": 0,
        "note": "untrained decoder written by sal3d bench (speed only)"}})
    return path


def measure_predict_store(ctx: Context, store: Path, checkpoint: Path, frames: int, work: Path) -> dict[str, dict]:
    """predict (store): `predict()` from the first `frames` frames of `store` (whole videos first; a store
    of their own under `work` when that is not all of it), PNGs written and removed."""
    total = ctx.data.total
    frames = min(frames, total)
    source = store if frames >= total else work / "predict.zarr"
    if source != store:
        subset_store(store, source, frames)

    def once(i: int):
        out = work / f"predict-{i}"
        with ctx.quietly():
            summary = predict(PredictConfig(str(source), checkpoint, out, device=str(ctx.settings.device)))
        shutil.rmtree(out, ignore_errors=True)
        return summary

    once(-1)
    summaries = [once(i) for i in range(ctx.settings.repeats)]
    rates = [s.frames_per_second for s in summaries]
    compute = ctx.compute
    flops = compute.tflops(compute.decoder_gmac, median(rates))
    sizes = ", ".join(f"{w}x{h}" for w, h in video_sizes(store))
    return figure("predict_store", rates,
                  f"{compute.of_peak(flops)} ({compute.decoder_gmac:.1f} GMAC/frame); PNGs written at {sizes} by "
                  f"{default_png_writers()} threads",
                  frames=summaries[0].frames, batch=GPU_BATCH if ctx.settings.cuda else CPU_BATCH, tflops=flops,
                  fraction_of_peak=compute.fraction(flops))


def measure_predict_video(ctx: Context, checkpoint: Path, frames: int, work: Path) -> dict[str, dict]:
    """predict (video file): `predict()` from the first `frames` frames of the bench's first video, cut
    into a file of their own (same bitstream), into a fresh feature cache; the cache and PNGs removed."""
    entry = ctx.data.entries[0]
    if not entry.is_video_file:
        return skipped(["predict_video"], "the dataset's videos are frame folders, not video files")
    count = min(frames, FrameReader(entry).info().frame_count)
    clip = trim_video(entry.source, work / "video-source" / f"{entry.source.stem}.avi", count)
    if clip is None:
        return skipped(["predict_video"],
                       "no ffmpeg to cut a clip of --predict-frames frames (pip install imageio-ffmpeg)")

    def once(i: int):
        out = work / f"predict-video-{i}"
        cache = work / f"predict-video-{i}.features.zarr"
        with ctx.quietly():
            summary = predict(PredictConfig(str(clip), checkpoint, out, device=str(ctx.settings.device),
                                            weights=ctx.settings.weights, cache=str(cache)))
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        if summary.failed:
            raise BenchError(f"predict from {clip} failed: {summary.failed}")
        return summary

    once(-1)
    summaries = [once(i) for i in range(ctx.settings.repeats)]
    rates = [s.frames / s.total_seconds for s in summaries]
    working = [s.frames / (s.extract_seconds + s.seconds) for s in summaries]
    shares = {"stage_one": median([s.extract_seconds / s.total_seconds for s in summaries]),
              "decoder": median([s.seconds / s.total_seconds for s in summaries])}
    shares["startup"] = max(0.0, 1 - shares["stage_one"] - shares["decoder"])
    return figure("predict_video", rates,
                  f"{count}-frame clip: stage one {shares['stage_one']:.0%}, decoder + PNGs {shares['decoder']:.0%}, "
                  f"start-up (trunk and decoder loading) {shares['startup']:.0%} of the time; without start-up "
                  f"{number(median(working))} frames/s",
                  frames=summaries[0].frames, video=str(entry.source), clip_frames=count,
                  frames_per_s_without_startup=median(working), time_shares=shares)


def subset_store(source: Path, target: Path, frames: int) -> FeatureStore:
    """The first `frames` frames of the store at `source` (whole videos first), as a store of their own."""
    whole = FeatureStore(str(source))
    store = FeatureStore(str(target), mode="a", trunk=whole.fingerprint,
                         dataset={k: v for k, v in whole.attrs.items() if k in ("layout", "dataset")})
    left = frames
    for video in whole.video_ids():
        if left <= 0:
            break
        attrs = whole.video_attrs(video)
        take = min(left, int(attrs["frame_count"]))
        kept = {k: v for k, v in attrs.items() if k not in ("frame_count", "complete")}
        kept["frame_names"] = list(attrs["frame_names"])[:take]
        maps = whole.maps(video)
        writer = store.begin_video(video, take, maps is not None, kept)
        writer.append(np.asarray(whole.features(video)[:take]),
                      None if maps is None else np.asarray(maps[:take]))
        writer.finish()
        left -= take
    return store
