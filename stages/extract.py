"""Stage one: decode every video of a dataset, run the trunk once per frame, cache the features.

Worker processes decode (decord, or PIL for frame folders) and read ground-truth maps, in batches of
frames; the main process runs the trunk on each batch; one writer thread compresses and writes to
the Zarr store. The three overlap, so the run goes at the speed of the slowest.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.datasets import VideoEntry, discover
from pipeline.frames import FrameReader, FrameReadError, read_maps
from pipeline.progress import Progress, say
from pipeline.store import FeatureStore
from pipeline.trunk import TrunkRunner, load_trunk, resolve_device


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
    workers: int | None = None  # decode processes; None: 1 on CPU, up to 8 on a GPU


@dataclass
class ExtractSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # video id -> reason
    frames: int = 0
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"extract: {len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed; "
                f"{self.frames} frames in {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)")


@dataclass
class Decoded:
    """One message from a decode worker, about the video at `index` of the work list.

    kind ``begin``: `info` holds the attributes to store (frame count after trimming, sizes...);
    ``frames``: `frames` uint8 (n, 224, 224, 3) and `maps` uint8 (n, 224, 224) or None from `start`;
    ``end``: every frame was sent; ``error``: `message` says why the video failed.
    """

    index: int
    kind: str
    start: int = 0
    frames: object = None
    maps: object = None
    info: dict | None = None
    message: str = ""


class DecodeStream(IterableDataset):
    """Decodes the work list in worker processes; worker k takes videos k, k + W, k + 2W, ..."""

    def __init__(self, entries: list[VideoEntry], root: Path, batch_size: int, max_frames: int | None):
        self.entries, self.root, self.batch_size, self.max_frames = entries, root, batch_size, max_frames

    def __iter__(self):
        worker = get_worker_info()
        first, step = (worker.id, worker.num_workers) if worker else (0, 1)
        for index in range(first, len(self.entries), step):
            yield from self._decode(index)

    def _decode(self, index: int):
        entry = self.entries[index]
        try:
            reader = FrameReader(entry)  # opened here, inside the worker: never across a fork
            info = reader.info()
            count = info.frame_count if self.max_frames is None else min(info.frame_count, self.max_frames)
            map_files, notes = entry.map_files(), []
            if map_files and len(map_files) != info.frame_count:
                notes.append(f"{info.frame_count} frames but {len(map_files)} maps: keeping the "
                             f"{min(count, len(map_files))} frames that have both")
                count = min(count, len(map_files))
            attrs = {
                "source": str(entry.source.relative_to(self.root)),
                "split": entry.split,
                "height": info.height, "width": info.width, "fps": info.fps,
                "source_frame_count": info.frame_count,
                "has_maps": bool(map_files), "has_fixations": bool(entry.fixation_files()),
                "frame_names": entry.frame_names(count),
            }
            yield Decoded(index, "begin", info={"frame_count": count, "attrs": attrs, "notes": notes})
            for start in range(0, count, self.batch_size):
                stop = min(start + self.batch_size, count)
                frames = reader.read(start, stop)
                maps = read_maps(map_files[start:stop]) if map_files else None
                yield Decoded(index, "frames", start, torch.from_numpy(frames),
                              None if maps is None else torch.from_numpy(maps))
            yield Decoded(index, "end")
        except FrameReadError as error:
            yield Decoded(index, "error", message=str(error))
        except Exception as error:  # anything else about this one video must not stop the dataset
            yield Decoded(index, "error", message=f"{entry.source}: {type(error).__name__}: {error}")


def _identity(message):
    return message


class _Writes:
    """Runs store writes in order on one thread, at most `depth` behind the trunk."""

    def __init__(self, depth: int = 4):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self.pending: deque[tuple[int, Future]] = deque()
        self.depth = depth

    def submit(self, index: int, fn, *args) -> list[tuple[int, BaseException]]:
        self.pending.append((index, self.pool.submit(fn, *args)))
        return self.collect(block=len(self.pending) > self.depth)

    def collect(self, block: bool = False) -> list[tuple[int, BaseException]]:
        """Errors of finished writes, as (video index, exception)."""
        errors = []
        while self.pending and (block or self.pending[0][1].done()):
            index, future = self.pending.popleft()
            error = future.exception()
            if error is not None:
                errors.append((index, error))
            block = block and len(self.pending) > self.depth
        return errors

    def drain(self) -> list[tuple[int, BaseException]]:
        errors = []
        while self.pending:
            errors += self.collect(block=True)
        self.pool.shutdown()
        return errors


def default_workers(device: torch.device) -> int:
    cpus = os.cpu_count() or 1
    return max(1, min(8, cpus - 1)) if device.type == "cuda" else 1


def extract(config: ExtractConfig) -> ExtractSummary:
    """Run stage one as configured; returns the summary (which says what failed, and why)."""
    root = Path(config.dataset)
    layout, entries = discover(root, config.layout, config.split, config.videos)
    device = resolve_device(config.device)
    trunk = load_trunk(config.weights)
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
        say(summary.line())
        return summary

    runner = TrunkRunner(trunk, device)
    workers = config.workers or default_workers(device)
    loader = DataLoader(DecodeStream(todo, root, config.batch_size, config.max_frames), batch_size=None,
                        num_workers=workers, collate_fn=_identity, prefetch_factor=4,
                        persistent_workers=False)
    writers: dict[int, object] = {}
    writes = _Writes()
    progress = Progress("extract", unit="frames")
    start = time.perf_counter()

    def fail(index: int, reason: str) -> None:
        video_id = todo[index].video_id
        if video_id not in summary.failed:
            summary.failed[video_id] = reason
            say(f"\nextract: FAILED {video_id}: {reason}")
        writers.pop(index, None)

    for message in loader:
        for index, error in writes.collect():
            fail(index, f"writing to {store.location}: {error}")
        index, video_id = message.index, todo[message.index].video_id
        if video_id in summary.failed:
            continue
        if message.kind == "error":
            fail(index, message.message)
        elif message.kind == "begin":
            for note in message.info["notes"]:
                say(f"\nextract: {video_id} ({todo[index].source}): {note}")
            with_maps = message.info["attrs"]["has_maps"]
            writers[index] = store.begin_video(video_id, message.info["frame_count"], with_maps,
                                               message.info["attrs"])
        elif message.kind == "frames":
            features = runner(message.frames)
            maps = None if message.maps is None else message.maps.numpy()
            for failed in writes.submit(index, writers[index].append, features, maps):
                fail(*failed)
            progress.update(len(features), note=video_id)
            summary.frames += len(features)
        elif message.kind == "end":
            for failed in writes.submit(index, writers.pop(index).finish):
                fail(*failed)
            summary.done.append(video_id)
    for index, error in writes.drain():
        fail(index, f"writing to {store.location}: {error}")
    summary.done = [v for v in summary.done if v not in summary.failed]
    summary.seconds = time.perf_counter() - start
    progress.close()
    say(summary.line())
    for video_id, reason in summary.failed.items():
        say(f"extract: failed {video_id}: {reason}")
    return summary
