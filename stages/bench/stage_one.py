"""Stage one's figures, measured interleaved repetition by repetition (a noisy machine disturbs them
alike): decode (`DecodeStream` in extract's decode processes), trunk (`TrunkRunner` on frames in
memory, in extract's batches; on CUDA also the module alone on device-resident frames), and `extract()`
end to end into a fresh store, with the store writes alone as one of its bounds."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from sal3d.pipeline.contract import FEATURE_SHAPE
from sal3d.pipeline.decode import DecodeStream, as_is, default_workers, default_writers
from sal3d.pipeline.preprocessing import normalize
from sal3d.pipeline.store import FeatureStore
from sal3d.pipeline.store_writers import StoreWriters
from sal3d.pipeline.trunk import TrunkRunner
from sal3d.stages.bench.config import BenchError
from sal3d.stages.bench.context import Context
from sal3d.stages.bench.data import video_sizes
from sal3d.stages.bench.machine import sync
from sal3d.stages.bench.report import KB, figure, median, note, number
from sal3d.stages.extract import ExtractConfig, extract

#: Bytes per frame of the trunk's features as float16, uncompressed.
RAW_BYTES_PER_FRAME = int(np.prod(FEATURE_SHAPE)) * 2


@dataclass
class _Measured:
    """Stage one's repetitions: frames/s of each ([] where not measured), and what they ran with."""

    decode: list[float] = field(default_factory=list)
    decode_maps: list[float] = field(default_factory=list)  # decoding with the maps, where the dataset has them
    trunk: list[float] = field(default_factory=list)
    write: list[float] = field(default_factory=list)
    extracted: list[float] = field(default_factory=list)
    device_only: list[float] = field(default_factory=list)  # the trunk module on device-resident frames (CUDA)
    agreement: float = 0.0  # see _check_extracted
    trunk_dtype: str = ""


def measure_stage_one(ctx: Context, store: Path, work: Path) -> dict[str, dict]:
    """The decode, trunk and extract figures. Leaves extract's store of the bench's videos at `store`
    (the later figures read it); its other files under `work` are removed."""
    measured = _measure(ctx, store, work)
    return _decode_trunk_figures(ctx, measured) | _extract_figure(ctx, store, measured)


def _measure(ctx: Context, store: Path, work: Path) -> _Measured:
    """Warm-ups (one decode pass keeping the frames for the trunk, every trunk batch shape, a whole extract
    into `store`), then `repeats` interleaved repetitions of every pass; on CUDA the trunk module alone."""
    repeats, device, batch = ctx.settings.repeats, ctx.settings.device, ctx.batch
    kept: dict[int, list[np.ndarray]] = {}
    _decode_pass(ctx, False, kept)
    videos = [np.concatenate(kept[i]) for i in sorted(kept)]
    runner = TrunkRunner(ctx.trunk, device)
    everything = np.concatenate(videos)
    for size in sorted({len(v[f:f + batch]) for v in videos for f in range(0, len(v), batch)}):
        runner(everything[:size])  # every batch shape once (cuDNN picks its algorithms per shape)
    _extract(ctx, store)
    features: list[np.ndarray] = []
    _trunk_pass(ctx, runner, videos, features)
    measured = _Measured(agreement=_check_extracted(ctx, store, features, [len(v) for v in videos]),
                         trunk_dtype=str(runner.dtype).removeprefix("torch."))
    for _ in range(repeats):
        measured.decode.append(_decode_pass(ctx, False))
        if ctx.data.entries[0].maps_dir is not None:
            measured.decode_maps.append(_decode_pass(ctx, True))
        measured.trunk.append(_trunk_pass(ctx, runner, videos))
        measured.write.append(_write_pass(ctx, work / "write-repeat.zarr", features))
        measured.extracted.append(_extract(ctx, work / "extract-repeat.zarr").frames_per_second)
    del features
    for name in ("write-repeat.zarr", "extract-repeat.zarr"):
        shutil.rmtree(work / name, ignore_errors=True)
    if ctx.settings.cuda:
        frames = torch.from_numpy(everything).to(device)
        _trunk_device_pass(ctx, runner, frames[:batch])
        measured.device_only = [_trunk_device_pass(ctx, runner, frames) for _ in range(repeats)]
        del frames
    return measured


def _decode_trunk_figures(ctx: Context, measured: _Measured) -> dict[str, dict]:
    """The decode and trunk figures."""
    compute, workers = ctx.compute, default_workers(ctx.settings.device)
    decode, decode_maps, trunk = measured.decode, measured.decode_maps, measured.trunk
    device_only = measured.device_only
    with_maps = median(decode_maps) if decode_maps else None
    figures = figure("decode", decode,
                     f"CPU: decord in {workers} decode process(es) of {ctx.machine['cpus_usable']} CPUs "
                     f"({median(decode) / workers:.0f} frames/s each)"
                     + (f"; with maps (as extract reads them): {with_maps:.1f} frames/s" if with_maps else ""),
                     workers=workers, with_maps_frames_per_s=with_maps, with_maps_runs=decode_maps,
                     frames=ctx.data.total)
    on_device = median(device_only) if device_only else median(trunk)
    figures |= figure("trunk", trunk,
                      f"{compute.of_peak(compute.tflops(compute.trunk_gmac, on_device))} at "
                      f"{compute.trunk_gmac:.2f} GMAC/frame"
                      + (f" (device only {on_device:.0f} frames/s; the rest is host<->device copies)"
                         if device_only else ""),
                      dtype=measured.trunk_dtype, batch=ctx.batch,
                      device_only_frames_per_s=on_device if device_only else None, device_only_runs=device_only,
                      gmac_per_frame=compute.trunk_gmac)
    return figures


def _extract_figure(ctx: Context, store: Path, measured: _Measured) -> dict[str, dict]:
    """The extract figure: its rate against its own stages' (the slowest bounds it), and what `store` holds
    per frame."""
    decode, extracted, device = measured.decode, measured.extracted, ctx.settings.device
    with_maps = median(measured.decode_maps) if measured.decode_maps else None
    # extract's own stages: decoding as it decodes (frames, and maps where the dataset has them),
    # the trunk, and the store writes; it can go no faster than the slowest
    stages = {"decode" + (" with maps" if with_maps else ""): with_maps or median(decode),
              "trunk": median(measured.trunk), "store writes": median(measured.write)}
    which = min(stages, key=stages.get)
    fraction = median(extracted) / stages[which]
    of_decode_trunk = median(extracted) / min(median(decode), median(measured.trunk))
    stored = FeatureStore(str(store))
    videos = stored.complete_videos()
    ids = list(videos)
    frames = sum(summary.frame_count for summary in videos.values())
    feature_bytes = sum(stored.features(v).nbytes_stored() for v in ids) / frames
    maps = [stored.maps(v) for v in ids]
    map_bytes = sum(m.nbytes_stored() for m in maps if m is not None) / frames if any(
        m is not None for m in maps) else None
    agreement = measured.agreement
    return figure("extract", extracted,
                  f"{fraction:.2f} x min(" + ", ".join(f"{k} {number(v)}" for k, v in stages.items())
                  + f") = {which}-bound ({of_decode_trunk:.2f} x min(decord alone, trunk)); store "
                  f"{feature_bytes / KB:.1f} KB/frame of features"
                  + (f" + {map_bytes / KB:.1f} KB of maps" if map_bytes else "")
                  + (f"; STORED FEATURES DIFFER FROM THE TRUNK'S ({agreement:.3g})" if agreement > 1e-2 else ""),
                  fraction_of_bound=fraction, bound_by=which, stage_rates=stages,
                  fraction_of_decode_trunk=of_decode_trunk, store_writes_runs=measured.write,
                  writers=default_writers(device), bytes_per_frame=feature_bytes,
                  map_bytes_per_frame=map_bytes, raw_bytes_per_frame=RAW_BYTES_PER_FRAME, frames=frames,
                  workers=default_workers(device), batch=ctx.batch, weights=ctx.settings.weights,
                  video_sizes=[f"{w}x{h}" for w, h in video_sizes(store)], max_difference_from_trunk=agreement)


def _decode_pass(ctx: Context, with_maps: bool, keep: dict | None = None) -> float:
    """One pass of extract's decode stage over the bench's videos: frames/s."""
    from torch.utils.data import DataLoader

    data = ctx.data
    entries = data.entries if with_maps else [replace(e, maps_dir=None) for e in data.entries]
    stream = DecodeStream(entries, data.root, ctx.batch, data.per_video)
    loader = DataLoader(stream, batch_size=None, num_workers=default_workers(ctx.settings.device),
                        collate_fn=as_is, prefetch_factor=4, persistent_workers=False)
    count = 0
    start = time.perf_counter()
    for message in loader:
        if message.kind == "error":
            raise BenchError(f"decoding failed: {message.message}")
        if message.kind == "frames":
            count += len(message.frames)
            if keep is not None:
                keep.setdefault(message.index, []).append(message.frames.numpy().copy())
    return count / (time.perf_counter() - start)


def _trunk_pass(ctx: Context, runner: TrunkRunner, videos: list[np.ndarray], keep: list | None = None) -> float:
    """The trunk on frames in memory, uint8 on the host to float16 on the host, in extract's batches: frames/s."""
    count = 0
    start = time.perf_counter()
    for frames in videos:
        for first in range(0, len(frames), ctx.batch):
            features = runner(frames[first:first + ctx.batch])
            count += len(features)
            if keep is not None:
                keep.append(features)
    return count / (time.perf_counter() - start)


def _write_pass(ctx: Context, store: Path, features: list[np.ndarray]) -> float:
    """extract's store writes alone (`StoreWriters`, its default writer processes) of trunk batches
    already in memory, each video's batches as extract queues them: frames/s."""
    if store.exists():
        shutil.rmtree(store)
    fingerprint = {"bench": "write pass"}
    FeatureStore(str(store), mode="a", trunk=fingerprint)
    batches = iter(features)
    errors = []
    counts = ctx.data.counts
    with StoreWriters(str(store), fingerprint, default_writers(ctx.settings.device), ctx.batch) as writes:
        writes.wait_ready()  # the writer processes' start-up is not write speed
        start = time.perf_counter()
        for index, video_id in enumerate(counts):
            errors += writes.begin(index, video_id, counts[video_id], False, {})
            for _ in range(0, counts[video_id], ctx.batch):
                errors += writes.append(index, next(batches))
            errors += writes.finish(index)
        errors += writes.close()
        seconds = time.perf_counter() - start
    if errors:
        raise BenchError(f"store writes failed: {errors[0][1]}")
    return ctx.data.total / seconds


def _trunk_device_pass(ctx: Context, runner: TrunkRunner, frames: torch.Tensor) -> float:
    """The trunk module alone on frames already on the device: frames/s."""
    device = ctx.settings.device
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode(), runner.autocast():
        for first in range(0, len(frames), ctx.batch):
            runner.module(normalize(frames[first:first + ctx.batch]))
    sync(device)
    return len(frames) / (time.perf_counter() - start)


def _extract(ctx: Context, store: Path):
    """`extract()` of the bench's videos into a fresh store at `store`: its summary."""
    if store.exists():
        shutil.rmtree(store)
    data, settings = ctx.data, ctx.settings
    config = ExtractConfig(dataset=data.root, store=str(store), layout=data.layout, split="all",
                           videos=list(data.counts), weights=settings.weights, device=str(settings.device),
                           batch_size=ctx.batch, max_frames=data.per_video)
    with ctx.quietly():
        summary = extract(config)
    if summary.failed:
        raise BenchError(f"extract failed: {summary.failed}")
    return summary


def _check_extracted(ctx: Context, store: Path, features: list[np.ndarray], lengths: list[int]) -> float:
    """The largest |extract's stored feature - the trunk's own on the same frames|, relative to the
    largest feature (extract's batches are the trunk pass's, so on a CPU the two are equal); above
    bf16's rounding it is said loudly, and the figures are still reported."""
    expected = np.split(np.concatenate(features).astype(np.float32), np.cumsum(lengths)[:-1])
    stored = FeatureStore(str(store))
    worst = 0.0
    for video_id, want in zip(ctx.data.counts, expected):
        got = stored.features(video_id)[:].astype(np.float32)
        if got.shape != want.shape:
            raise BenchError(f"extract stored {got.shape} features for {video_id}, the trunk gave {want.shape}")
        worst = max(worst, float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)))
    if worst > 1e-2:
        note(f"WARNING: extract's stored features differ from the trunk's on the same frames (largest "
             f"difference {worst:.3g} of the largest feature): extract is not storing what the trunk computes")
    return worst
