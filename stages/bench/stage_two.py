"""Stage two's figures: the loader alone (`WindowLoader` serving the store with train-decoder's
default workers, no model), the training step on the loader's batches ("cached", as `run_epoch` runs
it) and on windows made on the fly ("end to end": each window's six frames decoded, run through the
trunk and weighted, its map read from the PNG), the two interleaved repetition by repetition, and the
hours the paper's protocol would take at the cached rate."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from sal3d.pipeline.frames import FrameReader, read_maps
from sal3d.pipeline.loader import Batch, LoaderOptions, WindowLoader, default_loader_workers, plan_runs
from sal3d.pipeline.store import FeatureStore
from sal3d.pipeline.training import LogitsCapture, build_model, build_optimizer, train_step
from sal3d.pipeline.trunk import TrunkRunner
from sal3d.pipeline.windows import (
    DEFAULT_WEIGHTING,
    apply_weighting,
    frames_needed,
    gather_windows,
    weighting_coefficients,
)
from sal3d.stages.bench.context import Context
from sal3d.stages.bench.machine import TRAIN_STEP_FACTOR, sync
from sal3d.stages.bench.report import figure, median, number, skipped
from sal3d.stages.train import TrainConfig

#: The paper's protocol: DHF1K train + UCF-Sports train windows per epoch, epochs, and its training time
#: (7 days on one GTX 1080, as the issue rounds it).
PROTOCOL_WINDOWS = 356_000
PROTOCOL_EPOCHS = 33
PAPER_HOURS = 160.0
KEYS = ("loader", "train_cached", "train_end_to_end", "projection")


def measure_stage_two(ctx: Context, store: Path, batch: int, steps: int, decode_rate: float | None,
                      trunk_rate: float | None) -> dict[str, dict]:
    """The loader, train (cached), train (end to end) and projection figures, on the videos of `store`
    that have maps: `batch` windows a step, `steps` cached steps a repetition (end to end a fifth, at
    least 1). `decode_rate` and `trunk_rate` (stage one's figures, frames/s) give the end-to-end ratio
    they imply, a cross-check."""
    features = FeatureStore(str(store))
    counts = {v: summary.frame_count for v, summary in features.complete_videos().items() if summary.has_maps}
    if not counts:
        return skipped(KEYS, "the dataset has no ground-truth maps: nothing to train on")
    repeats, device, cuda = ctx.settings.repeats, ctx.settings.device, ctx.settings.cuda
    workers = default_loader_workers(device)
    model, memory_format = build_model(device, seed=0, prior=0.1)
    optimizer, _ = build_optimizer(model, TrainConfig.lr, TrainConfig.lr_step)
    logits = LogitsCapture(model)
    model.train()
    if cuda:
        torch.backends.cudnn.benchmark = True  # as train() sets it
    loader = WindowLoader(str(store), plan_runs(counts), batch, DEFAULT_WEIGHTING,
                          LoaderOptions(device=device, seed=0, shuffle=True, workers=workers,
                                        memory_format=memory_format))
    _serve_epoch(loader, device, 0)
    served = [_serve_epoch(loader, device, 1 + i) for i in range(repeats)]

    # the training step, cached and end to end, interleaved repetition by repetition
    training = TrainingSteps(ctx, loader, model, optimizer, logits, memory_format, batch, list(counts))
    uncached_steps = max(1, steps // 5)  # each decodes six frames per window: slower, fewer suffice
    # warm-up: on CUDA three cached steps (cuDNN picks its algorithms on the first ones); on a CPU one batch
    # from the loader only -- the end-to-end warm-up step runs the same decoder step on the same shapes
    for _ in range(3 if cuda else 0):
        training.cached()
    if not cuda:
        next(training.batches)
    sync(device)
    training.end_to_end()
    training.reset_clocks()
    cached, uncached, cached_seconds = [], [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        cached.append(_rate(training.cached, steps, device))
        cached_seconds += time.perf_counter() - start
        uncached.append(_rate(training.end_to_end, uncached_steps, device))
    training.close()

    rate = median(cached)
    steady = [s for s, _ in served]
    where = "a background thread" if not workers else f"{workers} processes"
    figures = figure("loader", steady,
                     f"Zarr reads + window gather on {where}: {median(steady) / rate:.1f} x train (cached)",
                     workers=workers, startup_seconds=[s for _, s in served],
                     windows_per_epoch=loader.windows_per_epoch, epochs_per_repeat=1, batch=batch,
                     ratio_to_train_cached=median(steady) / rate)
    compute = ctx.compute
    flops = compute.tflops(TRAIN_STEP_FACTOR * compute.decoder_gmac, rate)
    loader_share = training.waited / cached_seconds if cached_seconds else 0.0
    figures |= figure("train_cached", cached,
                      f"{compute.of_peak(flops)} ({TRAIN_STEP_FACTOR} x {compute.decoder_gmac:.1f} GMAC "
                      f"forward/window); waiting for the loader {loader_share:.0%} of the time",
                      batch=batch, steps_per_repeat=steps, dtype=str(ctx.settings.dtype).removeprefix("torch."),
                      loader_wait_share=loader_share,
                      gmac_per_window=TRAIN_STEP_FACTOR * compute.decoder_gmac, tflops=flops,
                      fraction_of_peak=compute.fraction(flops))
    total = sum(training.phases.values()) or 1.0
    shares = {k: v / total for k, v in training.phases.items()}
    # The target's ratio: repetitions measured back to back, paired (a load change between them hits both).
    # Cross-checks: within the end-to-end steps themselves, 1 / the decoder step's share of their time (decode,
    # trunk and step a few seconds apart: the least disturbed by a noisy machine), and the ratio the decode,
    # trunk and cached-step figures imply, (6/decode + 6/trunk + 1/cached) / (1/cached).
    paired = median([c / u for c, u in zip(cached, uncached)])
    within = 1 / shares["step"] if shares["step"] else None
    predicted = (1 + 6 * rate / decode_rate + 6 * rate / trunk_rate) if decode_rate and trunk_rate else None
    figures |= figure("train_end_to_end", uncached,
                      f"decode {shares['decode']:.0%}, trunk {shares['trunk']:.0%}, step {shares['step']:.0%} of the "
                      f"time; train (cached) is {paired:.2f} x this (repetitions back to back; within these steps "
                      f"1 / step share = {number(within)} x)",
                      batch=batch, steps_per_repeat=uncached_steps, time_shares=shares,
                      decode="main process, one window's six frames at a time (decord seeks)",
                      ratio_cached_to_end_to_end=paired, ratio_of_medians=rate / median(uncached),
                      ratio_within_steps=within, ratio_from_components=predicted)
    return figures | projection(cached)


def projection(cached: list[float]) -> dict[str, dict]:
    """The hours of the paper's protocol at each train (cached) rate, windows/s."""
    hours = [PROTOCOL_WINDOWS * PROTOCOL_EPOCHS / r / 3600 for r in cached]
    return figure("projection", hours,
                  f"{PROTOCOL_WINDOWS:,} windows x {PROTOCOL_EPOCHS} epochs at train (cached) rate; "
                  f"{median(hours) / PAPER_HOURS:.3g} x the paper's {PAPER_HOURS:.0f} h; "
                  "validation and BatchNorm recalibration not counted",
                  paper_hours=PAPER_HOURS, windows_per_epoch=PROTOCOL_WINDOWS, epochs=PROTOCOL_EPOCHS,
                  speedup_over_paper=PAPER_HOURS / median(hours))


def _serve_epoch(loader: WindowLoader, device: torch.device, epoch: int) -> tuple[float, float]:
    """The loader alone, no model, over one whole epoch: windows/s timed from its first batch (the steady
    rate a long epoch sees), and the seconds to that first batch (worker start, first group read)."""
    start = time.perf_counter()
    first_at, windows, after_first = None, 0, 0
    batches = loader.batches(epoch)
    for item in batches:
        if first_at is None:
            sync(device)
            first_at = time.perf_counter()
        else:
            after_first += len(item)
        windows += len(item)
    batches.close()
    sync(device)
    end = time.perf_counter()
    steady = after_first / (end - first_at) if after_first else windows / (end - start)
    return steady, first_at - start


def _rate(step, count: int, device: torch.device) -> float:
    """`count` calls of `step` (each returns its windows): windows/s."""
    sync(device)
    start = time.perf_counter()
    windows = sum(step() for _ in range(count))
    sync(device)
    return windows / (time.perf_counter() - start)


class TrainingSteps:
    """The training step on one model two ways: `cached` on the loader's next batch, as `run_epoch` runs
    it; `end_to_end` on windows made on the spot (each window's six frames decoded with decord, run
    through the trunk and weighted, its map read from the PNG). Each returns its windows; `waited` (the
    cached steps' wait for the loader) and `phases` (the end-to-end steps' decode, trunk and step) are
    seconds summed since `reset_clocks`."""

    def __init__(self, ctx: Context, loader: WindowLoader, model, optimizer, logits: LogitsCapture,
                 memory_format, batch: int, videos: list[str]):
        self.model, self.optimizer, self.logits, self.memory_format = model, optimizer, logits, memory_format
        self.device, self.dtype, self.batch = ctx.settings.device, ctx.settings.dtype, batch
        self.batches = self._stream(loader)
        entries = {e.video_id: e for e in ctx.data.entries}
        self.readers = {v: FrameReader(entries[v]) for v in videos}
        self.map_files = {v: entries[v].map_files() for v in videos}
        self.runner = TrunkRunner(ctx.trunk, self.device)
        self.targets = iter(t for epoch in range(10**6) for t in loader.targets(epoch))
        self.coefficients = weighting_coefficients(DEFAULT_WEIGHTING)
        self.reset_clocks()

    @staticmethod
    def _stream(loader: WindowLoader):
        epoch = 0
        while True:
            batches = loader.batches(epoch)
            try:
                yield from batches
            finally:
                batches.close()
            epoch += 1

    def reset_clocks(self) -> None:
        self.waited = 0.0
        self.phases = {"decode": 0.0, "trunk": 0.0, "step": 0.0}

    def cached(self) -> int:
        t0 = time.perf_counter()
        item = next(self.batches)
        self.waited += time.perf_counter() - t0
        train_step(self.model, self.optimizer, self.logits, item, self.device, self.dtype)
        return len(item)

    def end_to_end(self) -> int:
        device = self.device
        chosen = [next(self.targets) for _ in range(self.batch)]
        t0 = time.perf_counter()
        clips, maps = [], []
        for video, t in chosen:  # decode each window's six frames; its map from the PNG
            start, stop = frames_needed([t])
            decoded = self.readers[video].read(start, stop)
            clips.append(gather_windows(decoded, [t], first=start)[0])
            maps.append(read_maps([self.map_files[video][t]])[0])
        t1 = time.perf_counter()
        features = self.runner(np.concatenate(clips))  # (6 x batch, 512, 14, 14) float16
        t2 = time.perf_counter()
        raw = torch.from_numpy(features).reshape(len(chosen), 6, *features.shape[1:]).to(device)
        windows = apply_weighting(raw, self.coefficients, dtype=torch.float32, memory_format=self.memory_format)
        maps_t = torch.from_numpy(np.stack(maps)).to(device).unsqueeze(1).to(torch.float32).div_(255.0)
        train_step(self.model, self.optimizer, self.logits, Batch(windows, maps_t, [v for v, _ in chosen],
                                                                  [t for _, t in chosen]), device, self.dtype)
        sync(device)
        t3 = time.perf_counter()
        self.phases["decode"] += t1 - t0
        self.phases["trunk"] += t2 - t1
        self.phases["step"] += t3 - t2
        return len(chosen)

    def close(self) -> None:
        self.batches.close()
        self.logits.handle.remove()
        self.readers.clear()  # no decord reader left open in this process when later stages fork workers
