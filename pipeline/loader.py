"""The windowed store loader: batches of weighted feature windows and target maps, straight from Zarr.

Nothing here decodes video or reads PNGs: features ``(T, 512, 14, 14)`` float16 and the cached
224x224 uint8 maps come from the feature store (:mod:`pipeline.store`); the window and weighting rule
is :mod:`pipeline.windows` (never re-implemented here).

Runs
    A video's target frames are cut into *runs* of ``run_length`` consecutive frames (default 16,
    two store chunks), aligned to the store's chunks: ``[0, 16), [16, 32), ...``, the last one
    shorter. A run is read from Zarr once -- frames ``max(0, start-5) .. stop-1``, i.e. the run plus
    the five frames before it (:func:`pipeline.windows.frames_needed`) -- and all of its windows are
    cut from that read with :func:`pipeline.windows.gather_windows`. Consecutive windows share five
    frames, so this reads ``(run + 5) / run`` frames per window instead of six.

Groups and the epoch order (deterministic: a function of ``seed`` and ``epoch`` only)
    1. the runs are shuffled (``numpy.random.default_rng([seed, epoch])``);
    2. consecutive runs of that order are pooled ``mix_runs`` at a time (default 8) into a *group*;
    3. the windows of a group are shuffled together (same generator);
    4. the epoch's sample sequence is the groups' windows one after the other, and batch ``i`` is
       samples ``[i * batch_size, (i + 1) * batch_size)`` of it (a batch may span two groups; only
       the epoch's last batch can be short).
    So a batch mixes windows of up to ``mix_runs`` runs (usually as many videos), while every frame
    is read once per epoch. Skipping the first ``k`` batches (a resumed epoch) reproduces the rest of
    the same sequence exactly.

Where the work happens
    A group is the unit of reading: :class:`GroupReader` (a map-style ``Dataset``) reads its runs
    and returns the raw frames (no 6x window duplication), the targets' maps, and for every target
    the six row indices of its window into those frames (``gather_windows`` applied to row numbers).
    Groups are read ahead either by a background thread (``workers=0``) or by DataLoader worker
    processes (``workers>0``; each opens the Zarr store lazily, in its own process). The main process
    moves a group to the device (pinned memory + ``non_blocking`` on CUDA), gathers the windows of a
    batch there by indexing, and weights them with :func:`pipeline.windows.apply_weighting`.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sal3d.pipeline.device import usable_cpus
from sal3d.pipeline.store import CHUNK_FRAMES, FeatureStore, StoreError
from sal3d.pipeline.windows import apply_weighting, frames_needed, gather_windows

__all__ = [
    "Run",
    "Batch",
    "plan_runs",
    "frames_without_targets",
    "epoch_groups",
    "validation_runs",
    "GroupReader",
    "WindowLoader",
    "LoaderOptions",
    "DEFAULT_RUN_LENGTH",
    "DEFAULT_MIX_RUNS",
]

DEFAULT_RUN_LENGTH = 2 * CHUNK_FRAMES
DEFAULT_MIX_RUNS = 8


@dataclass(frozen=True)
class Run:
    """Target frames ``[start, stop)`` of one video; read as frames ``frames_needed(...)``."""

    video: str
    start: int
    stop: int

    @property
    def span(self) -> tuple[int, int]:
        """``[first, stop)`` of the frames read for this run (the run and up to 5 frames before)."""
        return frames_needed(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class Batch:
    """One batch on the device.

    windows: ``(n, 512, 6, 14, 14)`` weighted, in the decoder layout, dtype float32 (see
    :func:`pipeline.windows.apply_weighting`); targets: ``(n, 1, 224, 224)`` float32 in [0, 1]
    (uint8 map / 255); videos / frames: which target frame each row is.
    """

    windows: torch.Tensor
    targets: torch.Tensor
    videos: list[str]
    frames: list[int]

    def __len__(self) -> int:
        return len(self.frames)


def plan_runs(frame_counts: dict[str, int], run_length: int = DEFAULT_RUN_LENGTH,
              without_targets: Mapping[str, Collection[int]] | None = None) -> list[Run]:
    """Chunk-aligned runs of every video (``video id -> frame count``), in sorted video order.

    without_targets: ``video id -> frame indices`` that are never targets (frames without a
    ground-truth map, `frames_without_targets`): a run is split around them, so they are read only
    as the window context of the frames after them."""
    if run_length < 1:
        raise ValueError(f"run_length must be >= 1, got {run_length}")
    runs = []
    for video in sorted(frame_counts):
        count = int(frame_counts[video])
        skipped = set((without_targets or {}).get(video) or ())
        for start in range(0, count, run_length):
            stop = min(start + run_length, count)
            runs += _around(Run(video, start, stop), skipped) if skipped else [Run(video, start, stop)]
    return runs


def _around(run: Run, skipped: set[int]) -> list[Run]:
    """The parts of `run` between the frames in `skipped` (none of them a target)."""
    parts, first = [], run.start
    for frame in range(run.start, run.stop + 1):
        if frame == run.stop or frame in skipped:
            if frame > first:
                parts.append(Run(run.video, first, frame))
            first = frame + 1
    return parts


def frames_without_targets(store: FeatureStore, videos: Collection[str]) -> dict[str, list[int]]:
    """``video id -> frame indices`` of `videos` whose frames have no ground-truth map (their
    records' ``frames_without_maps``; videos where every frame has one are left out). The records are
    the checked ones (`FeatureStore.check_video`, cached): no video is read again."""
    found = {}
    for video in videos:
        without = store.check_video(video).frames_without_maps
        if without:
            found[video] = [int(frame) for frame in without]
    return found


def epoch_groups(runs: Sequence[Run], seed: int, epoch: int, mix_runs: int = DEFAULT_MIX_RUNS,
                 shuffle: bool = True) -> list[tuple[tuple[Run, ...], np.ndarray]]:
    """The epoch's groups: ``(runs, order)`` where ``order`` permutes the group's targets.

    The group's targets, before permutation, are its runs' frames in run order
    (run 0's ``start..stop-1``, then run 1's...). With ``shuffle=False`` runs keep their order and
    ``order`` is the identity (validation).
    """
    if mix_runs < 1:
        raise ValueError(f"mix_runs must be >= 1, got {mix_runs}")
    rng = np.random.default_rng([int(seed), int(epoch)])
    ordered = [runs[i] for i in rng.permutation(len(runs))] if shuffle else list(runs)
    groups = []
    for first in range(0, len(ordered), mix_runs):
        members = tuple(ordered[first:first + mix_runs])
        n = sum(len(r) for r in members)
        groups.append((members, rng.permutation(n) if shuffle else np.arange(n)))
    return groups


def validation_runs(runs: Sequence[Run], max_windows: int | None, seed: int = 0) -> list[Run]:
    """A fixed subset of ``runs`` holding at most ``max_windows`` targets (None or 0: all).

    Runs are picked in a seeded random order (``seed`` is a constant, so the subset does not change
    between epochs or runs), the last one cut short to hit the count exactly; returned sorted.
    """
    if not max_windows or max_windows >= sum(len(r) for r in runs):
        return list(runs)
    picked, total = [], 0
    for i in np.random.default_rng(seed).permutation(len(runs)):
        run = runs[i]
        take = min(len(run), max_windows - total)
        picked.append(Run(run.video, run.start, run.start + take))
        total += take
        if total >= max_windows:
            break
    return sorted(picked, key=lambda r: (r.video, r.start))


class GroupReader(Dataset):
    """Map-style dataset: item ``i`` is group ``i`` read from the store.

    Returns a dict of numpy arrays / lists:

    - ``features``: ``(F, 512, 14, 14)`` float16, the runs' read spans one after the other;
    - ``rows``: ``(n, 6)`` int64, row ``j`` = indices into ``features`` of target ``j``'s window
      (oldest first), made by :func:`gather_windows` on row numbers;
    - ``maps``: ``(n, 224, 224)`` uint8, the targets' ground-truth maps;
    - ``videos``, ``frames``: the targets' ids, in the group's (shuffled) order.

    The store is opened on first use in each process (never inherited across a fork); each video is
    checked against its integrity record when first read there. A damaged video gives ``{"error":
    message}`` instead (the message names the store, video, array and chunk), which the loader raises
    as a StoreError in the main process: a worker's exception would arrive wrapped in its traceback.
    """

    def __init__(self, location: str, groups: list[tuple[tuple[Run, ...], np.ndarray]]):
        self.location = location
        self.groups = groups
        self._store: FeatureStore | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def store(self) -> FeatureStore:
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = FeatureStore(self.location, mode="r"), os.getpid()
        return self._store

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_store"], state["_pid"] = None, None
        return state

    def __getitem__(self, index: int) -> dict:
        try:
            return self._read(index)
        except StoreError as error:
            return {"error": str(error)}

    def _read(self, index: int) -> dict:
        runs, order = self.groups[index]
        features, rows, maps, videos, frames = [], [], [], [], []
        offset = 0
        for run in runs:
            first, stop = run.span
            features.append(np.asarray(self.store.features(run.video)[first:stop]))
            targets = range(run.start, run.stop)
            # The window rule, applied to row numbers: row k of this span is frame first + k.
            rows.append(gather_windows(np.arange(offset, offset + stop - first), targets, first=first))
            maps.append(np.asarray(self.store.maps(run.video)[run.start:run.stop]))
            videos += [run.video] * len(run)
            frames += list(targets)
            offset += stop - first
        order = np.asarray(order)
        return {
            "features": np.concatenate(features),
            "rows": np.concatenate(rows)[order],
            "maps": np.concatenate(maps)[order],
            "videos": [videos[i] for i in order],
            "frames": [frames[i] for i in order],
        }


def _as_tensors(item: dict) -> dict:
    if "error" in item:
        return item
    return {**item, "features": torch.from_numpy(item["features"]), "rows": torch.from_numpy(item["rows"]),
            "maps": torch.from_numpy(item["maps"])}


def _collate(item: dict) -> dict:
    return _as_tensors(item)


_END = object()


class _ThreadPrefetch:
    """Reads items of a dataset in order on one background thread, at most `depth` ahead."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], depth: int, pin: bool):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(dataset, list(indices), pin),
                                       name="window-loader", daemon=True)
        self.thread.start()

    def _work(self, dataset, indices, pin):
        try:
            for index in indices:
                if self.stop.is_set():
                    return
                item = _as_tensors(dataset[index])
                if pin:
                    item = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in item.items()}
                self._put(item)
            self._put(_END)
        except BaseException as error:  # surfaces in the consumer
            self._put(error)

    def _put(self, item):
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)


@dataclass(frozen=True)
class LoaderOptions:
    """How a :class:`WindowLoader` orders, reads and delivers its windows (all but what it serves).

    device: where batches are delivered.
    seed: the shuffling seed (with the epoch number, it fixes the epoch's order).
    shuffle: False serves runs in the given order, targets in frame order (validation).
    workers: 0 reads ahead on a background thread; N > 0 in N DataLoader worker processes.
    mix_runs: runs pooled per group (see the module docstring).
    prefetch: groups read ahead (per worker, or in all for the thread).
    dtype, memory_format: of the delivered windows (float32; channels_last_3d on CUDA).
    """

    device: torch.device | str = "cpu"
    seed: int = 0
    shuffle: bool = True
    workers: int = 0
    mix_runs: int = DEFAULT_MIX_RUNS
    prefetch: int = 2
    dtype: torch.dtype = torch.float32
    memory_format: torch.memory_format = torch.contiguous_format


class WindowLoader:
    """Batches of weighted windows and targets from a feature store, for training or validation.

    Args:
        location: the feature store.
        runs: the runs to serve (see :func:`plan_runs`, :func:`validation_runs`).
        batch_size: windows per batch.
        coefficients: the weighting (a name or six numbers), see :mod:`pipeline.windows`.
        options: order, reading and delivery (:class:`LoaderOptions`; its defaults: shuffled with seed 0,
            on the CPU, read ahead by a background thread, float32).
    """

    def __init__(self, location: str, runs: Sequence[Run], batch_size: int, coefficients,
                 options: LoaderOptions = LoaderOptions()):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.location, self.runs, self.batch_size = str(location), list(runs), batch_size
        self.coefficients, self.options, self.device = coefficients, options, torch.device(options.device)

    @property
    def windows_per_epoch(self) -> int:
        return sum(len(r) for r in self.runs)

    def batches_per_epoch(self) -> int:
        return -(-self.windows_per_epoch // self.batch_size)

    def groups(self, epoch: int) -> list[tuple[tuple[Run, ...], np.ndarray]]:
        return epoch_groups(self.runs, self.options.seed, epoch, self.options.mix_runs, self.options.shuffle)

    def targets(self, epoch: int) -> list[tuple[str, int]]:
        """The epoch's full sample sequence, ``(video, frame)`` per window, in serving order."""
        out = []
        for runs, order in self.groups(epoch):
            flat = [(r.video, t) for r in runs for t in range(r.start, r.stop)]
            out += [flat[i] for i in order]
        return out

    def _group_stream(self, dataset: GroupReader, indices: list[int]) -> Iterator[dict]:
        pin = self.device.type == "cuda"
        if not indices:
            return
        if self.options.workers > 0:
            loader = DataLoader(dataset, batch_size=None, sampler=indices, num_workers=self.options.workers,
                                collate_fn=_collate, pin_memory=pin, prefetch_factor=self.options.prefetch,
                                persistent_workers=False)
            yield from loader
        else:
            reader = _ThreadPrefetch(dataset, indices, self.options.prefetch, pin)
            try:
                yield from reader
            finally:
                reader.close()

    def batches(self, epoch: int = 0, skip: int = 0) -> Iterator[Batch]:
        """The epoch's batches in order, starting after the first `skip` batches (a resumed epoch)."""
        groups = self.groups(epoch)
        sizes = [len(order) for _, order in groups]
        to_drop = skip * self.batch_size
        first_group = 0
        while first_group < len(groups) and to_drop >= sizes[first_group]:
            to_drop -= sizes[first_group]
            first_group += 1
        dataset = GroupReader(self.location, groups)
        pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list, list]] = []
        held = 0
        for item in self._group_stream(dataset, list(range(first_group, len(groups)))):
            if "error" in item:
                raise StoreError(item["error"])
            features = item["features"].to(self.device, non_blocking=True)
            rows = item["rows"].to(self.device, non_blocking=True)
            maps = item["maps"].to(self.device, non_blocking=True)
            videos, frames = item["videos"], item["frames"]
            start = to_drop
            to_drop = 0
            while start < len(frames):
                take = min(self.batch_size - held, len(frames) - start)
                pending.append((features, rows[start:start + take], maps[start:start + take],
                                videos[start:start + take], frames[start:start + take]))
                held += take
                start += take
                if held == self.batch_size:
                    yield self._assemble(pending)
                    pending, held = [], 0
        if pending:
            yield self._assemble(pending)

    def _assemble(self, parts) -> Batch:
        raw = torch.cat([features[rows] for features, rows, *_ in parts])  # (n, 6, 512, 14, 14)
        windows = apply_weighting(raw, self.coefficients, dtype=self.options.dtype,
                                  memory_format=self.options.memory_format)
        targets = torch.cat([maps for _, _, maps, *_ in parts]).unsqueeze(1).to(torch.float32).div_(255.0)
        videos = [v for *_, vids, _ in parts for v in vids]
        frames = [int(f) for *_, fr in parts for f in fr]
        return Batch(windows, targets, videos, frames)


GPU_LOADER_WORKERS = 8  # at most, with a GPU
DEFAULT_LOADER_WORKERS_TEXT = f"0 (a background thread) on CPU, up to {GPU_LOADER_WORKERS} processes with a GPU (CPUs / 2)"


def default_loader_workers(device: torch.device) -> int:
    """Loader processes: 0 (a background reader thread) on CPU, where the decoder is orders of magnitude
    slower than the loader; with CUDA up to GPU_LOADER_WORKERS, half the CPUs (one process serves about
    half of what a GPU trains on: benchmarks/README.md)."""
    return max(1, min(GPU_LOADER_WORKERS, usable_cpus() // 2)) if device.type == "cuda" else 0
