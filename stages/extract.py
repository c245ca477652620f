"""Stage one: decode every video of a dataset, run the trunk once per frame, cache the features.

Worker processes decode (decord, or PIL for frame folders) and read ground-truth maps, in batches of
frames; the main process runs the trunk on each batch; writer processes (`pipeline.store_writers`,
one per video at a time) compress and write to the Zarr store. The three overlap, so the run goes at
the speed of the slowest.

Before any of that, every video of the dataset is looked up in the store (`plan`): a complete video
is skipped only when it passes the store's integrity check and was extracted from the same source
with the same --max-frames (`pipeline.identity`); a damaged one is marked incomplete, a group whose
metadata cannot be read is discarded, and both are redone, each with a line saying why. A video that
another live run is writing is left to it (`pipeline.store.Owner`): the run then ends saying the
store is not complete yet. Decode workers and writer processes die with the run (`pipeline.lifetime`).
Interrupted (Ctrl-C, or SIGTERM under `pipeline.lifetime.sigterm_as_interrupt`), a run says in one
line what the store keeps and lets the interrupt go on.
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

from sal3d.pipeline.choices import DEFAULT_TRUNK
from sal3d.pipeline.cluster import cluster_workers, dask_client, gpu_resources
from sal3d.pipeline.datasets import VideoEntry, discover
from sal3d.pipeline.decode import (
    DEFAULT_WORKERS_TEXT,
    DEFAULT_WRITERS_TEXT,
    DecodeStream,
    as_is,
    default_workers,
    default_writers,
    video_arguments,
)
from sal3d.pipeline.device import resolve_device
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.identity import origin_change, origin_of, pairing_change
from sal3d.pipeline.lifetime import Terminated, die_with_parent
from sal3d.pipeline.progress import Progress, say
from sal3d.pipeline.store import FeatureStore, StoreError, VideoCompleted, VideoOwned
from sal3d.pipeline.store_writers import StoreWriters
from sal3d.pipeline.trunk import TRUNK_BATCH, Trunk, TrunkRunner, load_trunk


@dataclass
class ExtractConfig:
    """Everything `sal3d extract` was asked; see its --help."""

    dataset: Path
    store: str
    layout: str = "auto"
    split: str = "all"
    videos: list[str] | None = None
    trunk: str = DEFAULT_TRUNK  # the trunk preset (pipeline.trunk)
    weights: str = "imagenet"
    device: str = "auto"
    batch_size: int = TRUNK_BATCH
    max_frames: int | None = None
    # decode processes; 0: decode in this process
    workers: int | None = field(default=None, metadata={"auto": DEFAULT_WORKERS_TEXT})
    # store writer processes; 0: a writer thread in this process
    writers: int | None = field(default=None, metadata={"auto": DEFAULT_WRITERS_TEXT})
    # a dask.distributed scheduler address or local:N; None: in this process
    scheduler: str | None = field(default=None, metadata={"auto": "in this process"})
    strict: bool = False  # a truncated source, or one with frames without maps, fails instead of being kept


WAIT_LABELS = {"decode": "waiting for decode", "trunk": "trunk", "writes": "waiting for writes"}


@dataclass
class ExtractSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # video id -> reason
    owned: dict[str, str] = field(default_factory=dict)  # video id -> why: another live run writes it
    redone: dict[str, str] = field(default_factory=dict)  # video id -> why a stored video was redone
    completed_elsewhere: set[str] = field(default_factory=set)  # skipped: another run completed them meanwhile
    short: dict[str, tuple[int, int]] = field(default_factory=dict)  # video id -> (decoded, expected) frames
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

    def dropped(self, video_id: str) -> bool:
        """True once a video failed, was left to another run or was completed by one: its remaining
        messages are dropped."""
        return video_id in self.failed or video_id in self.owned or video_id in self.completed_elsewhere

    def completed_by_another_run(self, video_id: str, reason: str) -> None:
        """Record a video that another run completed meanwhile (it is complete: skipped, not left) and
        say it at once, in one plain line."""
        if not self.dropped(video_id):
            self.completed_elsewhere.add(video_id)
            self.skipped.append(video_id)
            say(f"\nextract: skipped {video_id}: {reason}")

    def leave(self, video_id: str, reason: str) -> None:
        """Record a video that another run writes (it is not this run's to do) and say it at once."""
        if not self.dropped(video_id):
            self.owned[video_id] = reason
            say(f"\nextract: left to another run: {video_id}: {reason}")

    def line(self) -> str:
        line = (f"extract: {len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"
                + (f", {len(self.owned)} left to another run" if self.owned else "")
                + (f", {len(self.short)} short" if self.short else "")
                + f"; {self.frames} frames in {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)")
        if self.frames and self.seconds > 0 and any(self.waits.values()):
            line += "; time " + ", ".join(f"{label} {self.waits[key] / self.seconds:.0%}"
                                          for key, label in WAIT_LABELS.items())
        return line

    def report(self, location: str) -> "ExtractSummary":
        """Say the summary line and every failure, then, when videos were left to another run, that
        the store at `location` is not complete yet (their reasons were said when they were left);
        returns itself."""
        say(self.line())
        for video_id, (decoded, expected) in self.short.items():
            say(f"extract: short video {video_id}: {decoded} frames decoded, about {expected} expected "
                "(kept; --strict fails such videos)")
        for video_id, reason in self.failed.items():
            say(f"extract: failed {video_id}: {reason}")
        if self.owned:
            say(f"extract: {location} is not complete yet: {len(self.owned)} video(s) left to another run "
                f"({', '.join(self.owned)}); run extract again once that run has ended")
        return self


def extract(config: ExtractConfig, trunk: Trunk | None = None) -> ExtractSummary:
    """Run stage one as configured; returns the summary (which says what failed, and why).

    trunk: the trunk ``config.trunk`` and ``config.weights`` name, when the caller has loaded it
    already (it is not loaded again). Interrupted (KeyboardInterrupt, `Terminated`), it says in one line what the store
    keeps, then lets the interrupt go on."""
    # absolute before anything: a cluster's tasks run in processes with other working directories
    root = Path(os.path.abspath(config.dataset))
    refuse_chained_url(config.store)
    summary, store = ExtractSummary(), None
    try:
        refused: dict[str, str] = {}  # video id -> why its source cannot be read (it leaves the root)
        layout, entries = discover(root, config.layout, config.split, config.videos, refused=refused)
        device = resolve_device(config.device)
        trunk = trunk or load_trunk(config.weights, config.trunk)
        store = FeatureStore(config.store, mode="a", trunk=trunk.fingerprint,
                             dataset={"layout": layout, "dataset": str(root.resolve())}, upgrade=True)
        for video_id, reason in refused.items():
            summary.fail(video_id, reason)
        if store.upgraded_from:
            say(f"extract: {store.location} was store format version {store.upgraded_from}: its videos have "
                "no integrity records and are redone")
        todo, origins = plan(store, entries, root, config.max_frames, summary)
        say(f"extract: {len(entries) + len(refused)} videos in {root} (layout {layout}, split {config.split}): "
            f"{len(summary.skipped)} already complete, {len(todo)} to do"
            + (f", {len(summary.owned)} being written by another run" if summary.owned else "") + f", on {device}")
        unscorable = no_fixations_line(entries)
        if unscorable:
            say(unscorable)
        if not todo:
            return summary.report(store.location)
        if config.scheduler:
            return _extract_on_cluster(config, root, todo, origins, store, summary)
        return _extract_in_process(config, TrunkRunner(trunk, device), root, todo, origins, store, summary)
    except KeyboardInterrupt as stop:
        say(f"\nextract: {'stopped by SIGTERM' if isinstance(stop, Terminated) else 'interrupted'}: "
            + (kept_line(store.location) if store is not None else "nothing was written"))
        raise


def refuse_chained_url(location: str) -> None:
    """Refuse (`StoreError`) a store location that extract cannot write: a chained fsspec URL
    (``simplecache::file://...``) reads through a local cache that writes never reach."""
    if "::" in str(location):
        raise StoreError(f"{location}: chained fsspec URLs are read-only here; extract into the store's own "
                         f"path or URL ({str(location).rsplit('::', 1)[1]}) and read it through the chain")


def kept_line(location: str) -> str:
    """What an interrupted run leaves in the store at `location`, in words (read afresh)."""
    try:
        complete = len(FeatureStore(location).video_ids())
    except Exception as error:  # noqa: BLE001 (the line must come out whatever the store says)
        return f"the store {location} could not be read back ({type(error).__name__})"
    return (f"{location} keeps its {complete} complete video(s); unfinished videos stay incomplete and "
            "a rerun redoes them")


def _extract_in_process(config: ExtractConfig, runner: TrunkRunner, root: Path, todo: list[VideoEntry],
                        origins: list[dict], store: FeatureStore, summary: ExtractSummary) -> ExtractSummary:
    """Decode workers (each dies with this process), the trunk in this process, and writer lanes (see
    the module's docstring)."""
    workers = default_workers(runner.device) if config.workers is None else config.workers
    loader = DataLoader(DecodeStream(todo, root, config.batch_size, config.max_frames, origins, config.strict,
                                     runner.preprocessing),
                        batch_size=None, num_workers=workers, collate_fn=as_is, prefetch_factor=4 if workers else None,
                        persistent_workers=False, worker_init_fn=functools.partial(die_with_parent, os.getpid()))
    lanes = default_writers(runner.device) if config.writers is None else config.writers
    # writers 0: one writer thread of this process
    with StoreWriters(store.location, store.fingerprint, max(lanes, 1), config.batch_size, threads=lanes == 0) as writes:
        _run_in_process(loader, runner, writes, todo, summary)
    return summary.report(store.location)


def no_fixations_line(entries: list[VideoEntry]) -> str | None:
    """The one line that says which videos with ground-truth maps have no fixation maps (images in
    ``fixation/``, or the benchmark's ``fixation/maps/*.mat``), so that evaluate cannot score the
    fixation metrics on them; None when every video with maps has them, or none has maps."""
    with_maps = [entry for entry in entries if entry.maps_dir is not None]
    without = [entry.video_id for entry in with_maps if not entry.fixation_files()]
    if not without:
        return None
    if len(without) == len(with_maps):
        return "extract: no fixation maps (fixation/*.png or fixation/maps/*.mat): AUC-J, s-AUC and NSS cannot be scored"
    named = ", ".join(without[:5]) + (", ..." if len(without) > 5 else "")
    return (f"extract: no fixation maps for {len(without)} of the {len(with_maps)} videos with maps ({named}): "
            "AUC-J, s-AUC and NSS cannot be scored on them")


def plan(store: FeatureStore, entries: list[VideoEntry], root: Path, max_frames: int | None,
         summary: ExtractSummary) -> tuple[list[VideoEntry], list[dict]]:
    """The videos to extract, with the origin each would record (`pipeline.identity`). Complete
    videos of the same origin go to ``summary.skipped``; videos another live run writes to
    ``summary.owned``; a damaged video is marked incomplete and an unreadable group discarded before
    they are redone; every stored video that is redone is said, with why, in ``summary.redone``."""
    todo, origins = [], []
    for entry in entries:
        video_id = entry.video_id
        try:
            origin = origin_of(entry, root, max_frames)
        except OSError as error:
            summary.fail(video_id, f"{entry.source}: cannot read ({error})")
            continue
        state, record, why = store.state(video_id)
        if state == "complete":
            why = (origin_change(record.origin, origin, record.frame_count, record.source_frame_count)
                   or pairing_change(record.origin, entry, record.frame_count))
            if why is None:
                summary.skipped.append(video_id)
                continue
        elif state == "damaged":
            store.mark_incomplete(video_id, why)
        elif state == "unreadable":
            store.discard(video_id)
            why += "; discarded"
        elif state == "owned":
            summary.leave(video_id, why)
            continue
        if state in ("complete", "damaged", "unreadable"):
            summary.redone[video_id] = why
            say(f"extract: redoing {video_id}: {why}")
        todo.append(entry)
        origins.append(origin)
    return todo, origins


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
        for index, reason in writes.skipped:
            summary.leave(todo[index].video_id, reason)
        for index, reason in writes.completed:
            summary.completed_by_another_run(todo[index].video_id, reason)
        writes.skipped.clear()
        writes.completed.clear()

    def hand_over() -> None:
        nonlocal pending
        if pending is None:
            return
        (index, batch, maps), pending = pending, None
        if summary.dropped(todo[index].video_id):
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
            if not summary.dropped(video_id):
                batch = runner.submit(message.frames)
                waits["trunk"] += time.perf_counter() - now
                hand_over()
                pending = (index, batch, None if message.maps is None else message.maps.numpy())
            mark = time.perf_counter()
            continue
        hand_over()  # a video's writes keep their order: its last batch goes before its end
        if summary.dropped(video_id):
            pass  # the rest of a failed (or another run's) video's messages are dropped
        elif message.kind == "error":
            summary.fail(video_id, message.message)
        elif message.kind == "begin":
            progress.part_size(message.info["frame_count"])
            for note in message.info["notes"]:
                say(f"\nextract: {video_id} ({todo[index].source}): {note}")
            if message.info["short"]:
                summary.short[video_id] = message.info["short"]
            record(writes.begin(index, *video_arguments(video_id, message.info, runner.dtype)))
        elif message.kind == "end":
            record(writes.finish(index))
            summary.done.append(video_id)
        mark = time.perf_counter()
    hand_over()
    drained = time.perf_counter()
    record(writes.close())
    waits["writes"] += time.perf_counter() - drained
    summary.done = [v for v in summary.done if not summary.dropped(v)]
    summary.short = {v: short for v, short in summary.short.items() if v in summary.done}
    summary.seconds = time.perf_counter() - start
    progress.close()


# ---------------------------------------------------------------------------------- on a Dask cluster


class VideoFailed(Sal3dError):
    """A video that could not be extracted; the message names the file and the reason."""


@functools.lru_cache(maxsize=2)
def _process_trunk(preset: str, weights: str, device: str) -> TrunkRunner:
    """The trunk of this (worker) process, loaded once and reused by every video task it runs.

    On a CPU it computes with OMP_NUM_THREADS threads when that is set: a Dask nanny sets it after
    the worker started (1 by default; `dask_client` gives each local worker its share of the cores),
    which may be after torch fixed its thread count."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
    return TrunkRunner(load_trunk(weights, preset), resolve_device(device))


@dataclass(frozen=True)
class VideoTaskSettings:
    """What every `extract_video` task of a cluster run shares: the dataset's root, the store (created
    beforehand by the client), the trunk's preset, weights and device, and how videos are decoded."""

    root: Path
    location: str
    trunk: str
    weights: str
    device: str
    batch_size: int
    max_frames: int | None
    strict: bool = False  # as ExtractConfig.strict

    @classmethod
    def of(cls, config: ExtractConfig, root: Path, location: str) -> VideoTaskSettings:
        """The settings of `config`'s tasks, reading the dataset at `root` into the store at `location`."""
        return cls(root, location, config.trunk, config.weights, config.device, config.batch_size, config.max_frames,
                   config.strict)


@dataclass(frozen=True)
class VideoTaskResult:
    """What an `extract_video` task did: `frames` written; `short`: (decoded, expected) frames of a
    truncated source, else None; `left`: why the video was left to another run (it writes or
    completed it: not a failure), else None."""

    frames: int
    short: tuple[int, int] | None = None
    left: str | None = None
    completed: bool = False  # left because another run completed it meanwhile (it is complete)


def extract_video(entry: VideoEntry, settings: VideoTaskSettings, origin: dict | None = None) -> VideoTaskResult:
    """Stage one for one video in this process, start to finish: decode, trunk, write into the store
    at ``settings.location``; `origin`: the origin the video records (`plan`). This is the task a Dask
    worker runs; it returns what it did (a video another run owns is a result, not an error, so the
    worker logs no failure), or raises `VideoFailed` / `StoreError` saying why the video failed. The
    worker claims the video as extract's writer processes do; killed mid-video, it leaves the video
    incomplete and the claim to lapse, and a rerun redoes it."""
    runner = _process_trunk(settings.trunk, settings.weights, settings.device)
    # the store refuses a worker whose trunk has other weights than the store's features
    store = FeatureStore(settings.location, mode="a", trunk=runner.fingerprint)
    writer, frames, short = None, 0, None
    stream = DecodeStream([entry], settings.root, settings.batch_size, settings.max_frames, [origin],
                          settings.strict, runner.preprocessing)
    try:
        for message in stream.decode_video(0):
            if message.kind == "error":
                raise VideoFailed(message.message)
            if message.kind == "begin":
                short = message.info["short"]
                writer = store.begin_video(*video_arguments(entry.video_id, message.info, runner.dtype))
            elif message.kind == "frames":
                writer.append(runner(message.frames), None if message.maps is None else message.maps.numpy())
                frames += len(message.frames)
            elif message.kind == "end":
                writer.finish()
                writer = None
    except VideoOwned as error:  # another run holds or completed it: this task leaves it
        writer = None
        return VideoTaskResult(frames, short, left=str(error), completed=isinstance(error, VideoCompleted))
    finally:
        if writer is not None:  # failed mid-video: let the next run have it at once
            writer.release()
    return VideoTaskResult(frames, short)


def _extract_on_cluster(config: ExtractConfig, root: Path, todo: list[VideoEntry], origins: list[dict],
                        store: FeatureStore, summary: ExtractSummary) -> ExtractSummary:
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
        # absolute paths: the tasks run in processes with other working directories
        location = os.path.abspath(store.location) if store.is_local else store.location
        settings = VideoTaskSettings.of(config, root, location)
        futures = {client.submit(extract_video, entry, settings, origin, pure=False,
                                 key=f"extract-{entry.video_id}-{uuid.uuid4().hex[:8]}", resources=resources): entry
                   for entry, origin in zip(todo, origins)}
        progress = Progress("extract", total=len(todo), unit="videos")
        for future in as_completed(futures):
            video_id = futures[future].video_id
            try:
                result = future.result()
                if result.completed:
                    summary.completed_by_another_run(video_id, result.left)
                elif result.left:
                    summary.leave(video_id, result.left)
                else:
                    summary.frames += result.frames
                    summary.done.append(video_id)
                    if result.short:
                        summary.short[video_id] = result.short
            except Exception as error:  # one video's failure, reported by video
                summary.fail(video_id, str(error) if isinstance(error, (VideoFailed, StoreError))
                             else f"{type(error).__name__}: {error}")
            progress.update(1, note=video_id)
        summary.seconds = time.perf_counter() - start
        progress.close()
    return summary.report(store.location)
