"""Stage one: decode every video of a dataset, run the trunk once per frame, cache the features.

Worker processes decode (decord, or PIL for frame folders) and read ground-truth maps, in batches of
frames; the main process runs the trunk on each batch; writer processes (`pipeline.store_writers`,
one per video at a time) compress and write to the Zarr store. The three overlap, so the run goes at
the speed of the slowest.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pipeline.cluster import cluster_workers, dask_client, gpu_resources
from pipeline.datasets import VideoEntry, discover
from pipeline.decode import (DEFAULT_WORKERS_TEXT, DEFAULT_WRITERS_TEXT, DecodeStream, as_is, default_workers,
                             default_writers, video_arguments)
from pipeline.errors import Sal3dError
from pipeline.progress import Progress, say
from pipeline.store import FeatureStore, StoreError
from pipeline.store_writers import StoreWriters
from pipeline.trunk import Trunk, TrunkRunner, load_trunk, resolve_device


@dataclass
class ExtractConfig:
    """Everything `sal3d extract` was asked; see its --help."""

    dataset: Path
    store: str
    layout: str = "auto"
    split: str = "all"
    videos: list[str] | None = None
    weights: str = "imagenet"
    device: str = "auto"
    batch_size: int = 32
    max_frames: int | None = None
    # decode processes; 0: decode in this process
    workers: int | None = field(default=None, metadata={"auto": DEFAULT_WORKERS_TEXT})
    # store writer processes; 0: a writer thread in this process
    writers: int | None = field(default=None, metadata={"auto": DEFAULT_WRITERS_TEXT})
    # a dask.distributed scheduler address or local:N; None: in this process
    scheduler: str | None = field(default=None, metadata={"auto": "in this process"})


WAIT_LABELS = {"decode": "waiting for decode", "trunk": "trunk", "writes": "waiting for writes"}


@dataclass
class ExtractSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # video id -> reason
    frames: int = 0
    seconds: float = 0.0
    # where the main loop's time went (seconds; measured in-process only), keys as WAIT_LABELS
    waits: dict[str, float] = field(default_factory=lambda: dict.fromkeys(WAIT_LABELS, 0.0))

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def fail(self, video_id: str, reason: str) -> None:
        """Record a video's failure (its first reason) and say it at once."""
        if video_id not in self.failed:
            self.failed[video_id] = reason
            say(f"\nextract: FAILED {video_id}: {reason}")

    def line(self) -> str:
        line = (f"extract: {len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed; "
                f"{self.frames} frames in {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)")
        if self.frames and self.seconds > 0 and any(self.waits.values()):
            line += "; time " + ", ".join(f"{label} {self.waits[key] / self.seconds:.0%}"
                                          for key, label in WAIT_LABELS.items())
        return line

    def report(self) -> "ExtractSummary":
        """Say the summary line and every failure; returns itself."""
        say(self.line())
        for video_id, reason in self.failed.items():
            say(f"extract: failed {video_id}: {reason}")
        return self


def extract(config: ExtractConfig, trunk: Trunk | None = None) -> ExtractSummary:
    """Run stage one as configured; returns the summary (which says what failed, and why).

    trunk: the trunk ``config.weights`` names, when the caller has loaded it already (it is not
    loaded again)."""
    root = Path(config.dataset)
    layout, entries = discover(root, config.layout, config.split, config.videos)
    device = resolve_device(config.device)
    trunk = trunk or load_trunk(config.weights)
    store = FeatureStore(config.store, mode="a", trunk=trunk.fingerprint,
                         dataset={"layout": layout, "dataset": str(root.resolve())})
    summary = ExtractSummary()
    todo = []
    for entry in entries:
        (summary.skipped if store.is_complete(entry.video_id) else todo).append(entry)
    summary.skipped = [e.video_id for e in summary.skipped]
    say(f"extract: {len(entries)} videos in {root} (layout {layout}, split {config.split}): "
        f"{len(summary.skipped)} already complete, {len(todo)} to do, on {device}")
    if not todo:
        return summary.report()

    if config.scheduler:
        return _extract_on_cluster(config, root, todo, store, summary)
    runner = TrunkRunner(trunk, device)
    workers = default_workers(device) if config.workers is None else config.workers
    loader = DataLoader(DecodeStream(todo, root, config.batch_size, config.max_frames), batch_size=None,
                        num_workers=workers, collate_fn=as_is, prefetch_factor=4 if workers else None,
                        persistent_workers=False)
    lanes = default_writers(device) if config.writers is None else config.writers
    # writers 0: one writer thread of this process
    with StoreWriters(store.location, store.fingerprint, max(lanes, 1), config.batch_size, threads=lanes == 0) as writes:
        _run_in_process(loader, runner, writes, todo, summary)
    return summary.report()


def _run_in_process(loader: DataLoader, runner: TrunkRunner, writes: StoreWriters, todo: list[VideoEntry],
                    summary: ExtractSummary) -> None:
    """The main loop: decoded batches from `loader` through the trunk into `writes`. The trunk runs one
    batch ahead of the writes, so on a GPU it computes while this thread hands the previous batch over."""
    progress = Progress("extract", unit="frames")
    progress.parts(len(todo))  # the total: each video's frame count, learnt from its decoder's begin
    start = time.perf_counter()
    waits = summary.waits
    pending = None  # (video index, TrunkBatch, maps): the trunk's latest batch, not yet handed to the writers

    def record(errors: list[tuple[int, str]]) -> None:
        for index, reason in errors:
            summary.fail(todo[index].video_id, reason)

    def hand_over() -> None:
        nonlocal pending
        if pending is None:
            return
        (index, batch, maps), pending = pending, None
        if todo[index].video_id in summary.failed:
            return
        computed = time.perf_counter()
        features = batch.result()
        handed = time.perf_counter()
        waits["trunk"] += handed - computed
        waited = writes.waited
        record(writes.append(index, features, maps))
        waits["writes"] += writes.waited - waited
        progress.update(len(features), note=f"{todo[index].video_id} (video {index + 1} of {len(todo)})")
        summary.frames += len(features)

    mark = time.perf_counter()
    for message in loader:
        now = time.perf_counter()
        waits["decode"] += now - mark
        index, video_id = message.index, todo[message.index].video_id
        if message.kind == "frames":
            if video_id not in summary.failed:
                batch = runner.submit(message.frames)
                waits["trunk"] += time.perf_counter() - now
                hand_over()
                pending = (index, batch, None if message.maps is None else message.maps.numpy())
            mark = time.perf_counter()
            continue
        hand_over()  # a video's writes keep their order: its last batch goes before its end
        if video_id in summary.failed:
            pass  # the rest of a failed video's messages are dropped
        elif message.kind == "error":
            summary.fail(video_id, message.message)
        elif message.kind == "begin":
            progress.part_size(message.info["frame_count"])
            for note in message.info["notes"]:
                say(f"\nextract: {video_id} ({todo[index].source}): {note}")
            record(writes.begin(index, *video_arguments(video_id, message.info)))
        elif message.kind == "end":
            record(writes.finish(index))
            summary.done.append(video_id)
        mark = time.perf_counter()
    hand_over()
    drained = time.perf_counter()
    record(writes.close())
    waits["writes"] += time.perf_counter() - drained
    summary.done = [v for v in summary.done if v not in summary.failed]
    summary.seconds = time.perf_counter() - start
    progress.close()


# ---------------------------------------------------------------------------------- on a Dask cluster


class VideoFailed(Sal3dError):
    """A video that could not be extracted; the message names the file and the reason."""


@functools.lru_cache(maxsize=2)
def _process_trunk(weights: str, device: str) -> TrunkRunner:
    """The trunk of this (worker) process, loaded once and reused by every video task it runs.

    On a CPU it computes with OMP_NUM_THREADS threads when that is set: a Dask nanny sets it after
    the worker started (1 by default; `dask_client` gives each local worker its share of the cores),
    which may be after torch fixed its thread count."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
    return TrunkRunner(load_trunk(weights), resolve_device(device))


def extract_video(entry: VideoEntry, root: Path, location: str, weights: str, device: str, batch_size: int,
                  max_frames: int | None) -> int:
    """Stage one for one video in this process, start to finish: decode, trunk, write into the store
    at `location` (created beforehand by the client). This is the task a Dask worker runs; it returns
    the frames written, or raises `VideoFailed` / `StoreError` saying why. A worker killed mid-video
    leaves the video incomplete, and a rerun redoes it."""
    runner = _process_trunk(weights, device)
    store = FeatureStore(location, mode="a", trunk=runner.fingerprint)  # refuses a worker with other weights
    writer, frames = None, 0
    for message in DecodeStream([entry], root, batch_size, max_frames).decode_video(0):
        if message.kind == "error":
            raise VideoFailed(message.message)
        if message.kind == "begin":
            writer = store.begin_video(*video_arguments(entry.video_id, message.info))
        elif message.kind == "frames":
            writer.append(runner(message.frames), None if message.maps is None else message.maps.numpy())
            frames += len(message.frames)
        elif message.kind == "end":
            writer.finish()
    return frames


def _extract_on_cluster(config: ExtractConfig, root: Path, todo: list[VideoEntry], store: FeatureStore,
                        summary: ExtractSummary) -> ExtractSummary:
    """One `extract_video` task per video on the cluster at ``config.scheduler``; results collected as
    they finish. A failed task is reported by video, as in-process; a worker that dies is replaced and
    its task rerun by the scheduler (up to distributed's ``allowed-failures``)."""
    from distributed import as_completed  # noqa: PLC0415 (dask_client checked that it is installed)

    with dask_client(config.scheduler) as client:
        resources = gpu_resources(client)
        workers = len(cluster_workers(client))
        say(f"extract: {len(todo)} video task(s) on the cluster at {config.scheduler} ({workers} worker(s)"
            + (", one GPU per task" if resources else "") + ")")
        start = time.perf_counter()
        futures = {client.submit(extract_video, entry, root.resolve(), store.location, config.weights,
                                 config.device, config.batch_size, config.max_frames, pure=False,
                                 key=f"extract-{entry.video_id}-{uuid.uuid4().hex[:8]}", resources=resources): entry
                   for entry in todo}
        progress = Progress("extract", total=len(todo), unit="videos")
        for future in as_completed(futures):
            video_id = futures[future].video_id
            try:
                summary.frames += future.result()
                summary.done.append(video_id)
            except Exception as error:  # one video's failure, reported by video
                summary.fail(video_id, str(error) if isinstance(error, (VideoFailed, StoreError))
                             else f"{type(error).__name__}: {error}")
            progress.update(1, note=video_id)
        summary.seconds = time.perf_counter() - start
        progress.close()
    return summary.report()
