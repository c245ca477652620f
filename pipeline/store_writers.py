"""Store writes off the main process: writer lanes fed through one shared-memory segment.

Why processes: on a GPU, stage one's main thread launches the trunk's kernels between batches, and
every torch call drops and retakes the GIL. Store writes in threads of the same process (zarr and
numcodecs run Python between their compressor calls) take it from that thread:
benchmarks/gil_contention.py measured its torch dispatch rate at 47% of alone with writes in a
thread, and 98% with the same writes in another process.

The main process copies a batch of features (and maps) into a free slot of the segment and sends the
batch's lane a small message; the lane copies the batch out, frees the slot, and writes with a
`VideoWriter`. All of a video's messages go to one lane (video index modulo lanes), so its writes
happen in order; different videos compress and write in parallel. A lane runs in a process of its
own (``python -m sal3d.pipeline.store_writers``, which imports no torch: see `pipeline.contract`), or, for
``memory://`` stores that only this process can see, in a thread.

A lane process dies with the main process (`pipeline.lifetime.die_with_parent`: at once, even on a
kill -9); what it had not finished stays incomplete in the store, and a rerun redoes it. Each video is
claimed in the name of the main process (`FeatureStore.begin_video` with the main process's `Owner`),
so that a killed run's claims are free the moment its main process is gone; a lane leaves a video that
another run holds, renews its claims while it waits for data and releases those it could not finish.

The segment is named ``sal3d_<pid>_<random>`` after the main process that made it: when a whole run is
killed (its resource tracker with it), the next run on this machine removes the segments of main
processes that are gone (`remove_dead_segments`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from sal3d.pipeline.contract import FEATURE_SHAPE, INPUT_SIZE
from sal3d.pipeline.lifetime import die_with_parent, process_running
from sal3d.pipeline.store import RENEW_SECONDS, FeatureStore, Owner, StoreError, VideoCompleted, VideoOwned, VideoWriter
from sal3d.pipeline.store.ownership import drop_claim, hold_claim

SLOTS_PER_LANE = 3  # batches in flight per lane: one being written, two waiting
STOP_SECONDS = 5.0  # how long a lane told to stop may take to finish the write in hand
SEGMENT_PREFIX = "sal3d_"  # shared-memory segments are named sal3d_<pid of the main process>_<random>
SHM_FOLDER = "/dev/shm"  # where Linux lists POSIX shared memory


def segment_name(pid: int | None = None) -> str:
    """A fresh segment name for the main process `pid` (default: this one): ``sal3d_<pid>_<8 hex>``
    (short: macOS allows 31 characters)."""
    return f"{SEGMENT_PREFIX}{os.getpid() if pid is None else pid}_{uuid.uuid4().hex[:8]}"


def remove_dead_segments(folder: str = SHM_FOLDER) -> list[str]:
    """Remove the segments in `folder` whose main process has ended (a run killed whole, its resource
    tracker with it, cannot remove its own); returns their names. Nothing where `folder` is absent or
    this system cannot tell a dead process (no /proc)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        pid = name[len(SEGMENT_PREFIX):].split("_")[0]
        if name.startswith(SEGMENT_PREFIX) and pid.isdigit() and process_running(int(pid)) is False:
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass  # another run removed it first, or it is not ours to remove
    return removed


@dataclass(frozen=True)
class Slots:
    """The layout of the shared segment: `count` slots, each one batch of up to `frames` frames of
    float16 features (frames, 512, 14, 14) and uint8 maps (frames, 224, 224)."""

    count: int
    frames: int

    @property
    def nbytes(self) -> int:
        return self.count * self.frames * (2 * int(np.prod(FEATURE_SHAPE)) + INPUT_SIZE * INPUT_SIZE)

    def views(self, buffer) -> tuple[np.ndarray, np.ndarray]:
        """(features (count, frames, 512, 14, 14) float16, maps (count, frames, 224, 224) uint8) over
        `buffer`."""
        features = np.ndarray((self.count, self.frames, *FEATURE_SHAPE), np.float16, buffer)
        maps = np.ndarray((self.count, self.frames, INPUT_SIZE, INPUT_SIZE), np.uint8, buffer,
                          offset=features.nbytes)
        return features, maps


def serve_lane(conn: Connection, location: str, fingerprint: dict, buffer, slots: Slots) -> None:
    """A lane's loop over the shared `buffer`: takes ``begin`` / ``append`` / ``finish`` messages until
    a ``None`` (answered ``("stopped",)``) or the main process's end of the pipe closes. Answers
    ``("ready",)`` once the store is open, ``("free", slot)`` as soon as a batch is copied out,
    ``("done", index)`` when a video is complete in the store, ``("skipped", index, reason)`` for a
    video another run owns (`VideoOwned`; ``("completed", index, reason)`` for one it completed
    meanwhile, `VideoCompleted`), ``("error", index, reason)`` for a video that cannot be
    written (the later messages of both are dropped), and ``("fatal", reason)`` before it ends on
    anything else (a store it cannot open...). A ``begin`` carries the `Owner` the video is claimed
    for (the main process's). While it waits for messages it renews the leases of the videos it
    holds; on its way out it releases those it did not finish."""
    features_slots, maps_slots = slots.views(buffer)
    writers: dict[int, VideoWriter] = {}
    failed = set()
    try:
        store = FeatureStore(location, mode="a", trunk=fingerprint)
        conn.send(("ready",))
        while True:
            try:
                while not conn.poll(RENEW_SECONDS / 4):
                    for writer in writers.values():
                        writer.keep_alive()
                message = conn.recv()
            except EOFError:
                return  # the main process is gone
            if message is None:
                conn.send(("stopped",))
                return
            kind, index = message[0], message[1]
            if kind == "append":
                slot, count, with_maps = message[2:]
                features = features_slots[slot, :count].copy()
                maps = maps_slots[slot, :count].copy() if with_maps else None
                conn.send(("free", slot))
            if index in failed:
                continue
            try:
                if kind == "begin":
                    *arguments, owner = message[2:]
                    writers[index] = store.begin_video(*arguments, owner=owner)
                elif kind == "append":
                    writers[index].append(features, maps)
                elif kind == "finish":
                    writers.pop(index).finish()
                    conn.send(("done", index))
            except VideoOwned as error:  # another run writes it: not a failure of this one
                failed.add(index)
                writers.pop(index, None)
                conn.send(("completed" if isinstance(error, VideoCompleted) else "skipped", index, str(error)))
            except Exception as error:  # this video's write failed; the others go on
                failed.add(index)
                writer = writers.pop(index, None)
                if writer is not None:
                    writer.release()
                reason = str(error) if isinstance(error, StoreError) else f"writing to {location}: {error}"
                conn.send(("error", index, reason))
    except KeyboardInterrupt:
        return  # a lane thread of an interrupted process; lane processes ignore Ctrl-C (see lane_process_main)
    except Exception as error:
        try:
            conn.send(("fatal", f"{type(error).__name__}: {error}"))
        except OSError:
            pass
    finally:
        for writer in writers.values():
            writer.release()
        del features_slots, maps_slots  # numpy views must go before the segment closes
        conn.close()


def lane_process_main(fd: int, parent_pid: int) -> None:
    """A lane process: its pipe is file descriptor `fd`; the first message says what to serve. It
    dies with its main process `parent_pid`. Ctrl-C and SIGTERM sent to the whole process group are
    ignored: an interrupt inside a Zarr write leaves that write's task running and failing on its own
    (a traceback on the way out); the main process stops its lanes instead, by closing their pipes."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _serve_segment(Connection(fd))


def _serve_segment(conn: Connection) -> None:
    try:
        location, fingerprint, segment, count, frames = conn.recv()
    except EOFError:
        return  # the main process ended before this one started
    memory = SharedMemory(name=segment)
    # Python < 3.13 hands an attached segment to this process's resource tracker, which would unlink
    # it when this process ends; the main process created it and is the one to remove it.
    resource_tracker.unregister(memory._name, "shared_memory")  # noqa: SLF001
    try:
        serve_lane(conn, location, fingerprint, memory.buf, Slots(count, frames))
    finally:
        memory.close()


@dataclass
class Lane:
    """The main process's side of one lane."""

    name: str
    conn: Connection
    host: subprocess.Popen | threading.Thread
    open_videos: set[int] = field(default_factory=set)  # begun, not yet done or failed
    slots_out: set[int] = field(default_factory=set)  # handed over, not yet freed
    fatal: str | None = None
    ready: bool = False

    def end(self, timeout: float) -> str:
        """Waits up to `timeout` s for the lane to end; returns how it ended, in words."""
        if isinstance(self.host, threading.Thread):
            self.host.join(timeout)
            how = f"store writer thread {self.name} stopped"
        else:
            try:
                code = self.host.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
            how = f"store writer process {self.name} (pid {self.host.pid}) died (exit code {code})"
        return f"store writer {self.name} stopped: {self.fatal}" if self.fatal else how

    def stop_now(self) -> None:
        """Stop the lane at once: it sees its pipe close after the message in hand, releases its claims
        and returns; a lane process that has not ended within STOP_SECONDS is killed."""
        self.conn.close()
        self.end(timeout=STOP_SECONDS)
        if isinstance(self.host, subprocess.Popen) and self.host.poll() is None:
            self.host.kill()
            self.end(timeout=5)


def start_lane(name: str, location: str, fingerprint: dict, memory: SharedMemory, slots: Slots,
               as_thread: bool) -> Lane:
    """A lane in a fresh interpreter running this module (torch is never imported there), or in a
    thread of this process."""
    ours, theirs = socket.socketpair()
    conn = Connection(ours.detach())
    if as_thread:
        host = threading.Thread(target=serve_lane, name=name, daemon=True,
                                args=(Connection(theirs.detach()), location, fingerprint, memory.buf, slots))
        host.start()
        return Lane(name, conn, host)
    host = subprocess.Popen([sys.executable, "-m", "sal3d.pipeline.store_writers", str(theirs.fileno()),
                             str(os.getpid())], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
    theirs.close()  # so that the lane's death closes the pipe for us
    conn.send((location, fingerprint, memory.name, slots.count, slots.frames))
    return Lane(name, conn, host)


class StoreWriters:
    """`lanes` writer lanes into the store at `location` (made with the trunk `fingerprint`), taking
    batches of up to `batch_frames` frames. Lanes are processes, except with `threads` and for
    ``memory://`` stores (threads of this process: no other process can see such a store). Use as a context manager and call `close` to wait for
    every write; leaving it by an exception, or without `close`, stops the lanes at once.

    `begin`, `append` and `finish` queue a video's writes and return the write errors that have come
    back so far, as (video index, reason); `append` blocks while every slot is in use (the time it
    blocked is added to `waited`). Videos a lane left because another run owns them are listed in
    `skipped`, those another run completed meanwhile in `completed`, both as (video index, reason).
    Videos are claimed in the name of this process (`Owner`).
    """

    def __init__(self, location: str, fingerprint: dict, lanes: int, batch_frames: int, threads: bool = False):
        self.slots = Slots(lanes * SLOTS_PER_LANE, batch_frames)
        remove_dead_segments()
        self.memory = SharedMemory(name=segment_name(), create=True, size=self.slots.nbytes)
        self.features_slots, self.maps_slots = self.slots.views(self.memory.buf)
        self.free = deque(range(self.slots.count))
        self.in_processes = not threads and not location.startswith("memory://")
        self.lanes: list[Lane] = []
        self.live: set[int] = set()  # lanes running and not yet told to stop
        self.errors: list[tuple[int, str]] = []
        self.skipped: list[tuple[int, str]] = []  # (video index, why): videos another run owns
        self.completed: list[tuple[int, str]] = []  # (video index, why): videos another run completed meanwhile
        self.claims: dict[int, str] = {}  # video index -> token of its claim, until the video is done or dropped
        self.waited = 0.0
        try:
            for k in range(lanes):
                self.lanes.append(start_lane(f"store-writer-{k}", location, fingerprint, self.memory, self.slots,
                                             as_thread=not self.in_processes))
                self.live.add(k)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def __enter__(self) -> "StoreWriters":
        return self

    def __exit__(self, kind, error, trace) -> None:
        for k, lane in enumerate(self.lanes):
            if kind is not None or k in self.live:  # an exception, or `close` was not called
                lane.stop_now()
            else:
                lane.end(timeout=30)  # after `close` a lane is only exiting (~0.2 s); reap it
        self.live = set()
        del self.features_slots, self.maps_slots  # numpy views must go before the segment closes
        try:
            self.memory.close()
        except BufferError:
            pass  # a lane thread that did not stop still maps it; the segment goes with this process
        self.memory.unlink()

    # ------------------------------------------------------------------ queueing

    def begin(self, index: int, video_id: str, frame_count: int, with_maps: bool, attrs: dict):
        """Start video `index` (its arrays created empty, as `FeatureStore.begin_video`)."""
        lane = index % len(self.lanes)
        self.lanes[lane].open_videos.add(index)
        owner = Owner.here()
        self.claims[index] = owner.token
        hold_claim(owner.token)  # this process's claim, though a lane process writes under it
        self._send(lane, ("begin", index, video_id, frame_count, with_maps, attrs, owner))
        return self.collect()

    def append(self, index: int, features: np.ndarray, maps: np.ndarray | None = None):
        """Queue video `index`'s next frames: features (n, 512, 14, 14) float16, maps (n, 224, 224)
        uint8 or None; n at most `batch_frames`."""
        if len(features) > self.slots.frames:
            raise ValueError(f"{len(features)} frames in one batch; the writers take at most {self.slots.frames}")
        lane = index % len(self.lanes)
        if lane in self.live:
            slot = self._free_slot()
            self.features_slots[slot, :len(features)] = features
            if maps is not None:
                self.maps_slots[slot, :len(maps)] = maps
            self.lanes[lane].slots_out.add(slot)
            self._send(lane, ("append", index, slot, len(features), maps is not None))
        return self.collect()

    def finish(self, index: int):
        """Write the rest of video `index` and mark it complete."""
        self._send(index % len(self.lanes), ("finish", index))
        return self.collect()

    def collect(self) -> list[tuple[int, str]]:
        """The errors that came back since the last call, as (video index, reason)."""
        self._pump(block=False)
        errors, self.errors = self.errors, []
        return errors

    def wait_ready(self) -> None:
        """Waits until every lane has started and opened the store (for timing the writes alone)."""
        while any(not self.lanes[k].ready for k in self.live):
            self._pump(block=True)

    def close(self) -> list[tuple[int, str]]:
        """Waits until every queued write is done and tells the lanes to stop; returns the remaining
        errors. (Leaving the context waits for the lanes to exit.)"""
        for lane in list(self.live):
            self._send(lane, None)
        while self.live:
            self._pump(block=True)
        return self.collect()

    # ------------------------------------------------------------------ the lanes' answers

    def _send(self, lane: int, message) -> None:
        if lane not in self.live:
            if message is not None and message[0] == "begin":
                self._lane_lost(lane)  # fails the video just begun on a dead lane
            return
        try:
            self.lanes[lane].conn.send(message)
        except OSError:
            self._lane_lost(lane)

    def _free_slot(self) -> int:
        if not self.free:
            start = time.perf_counter()
            while not self.free:
                if not self.live:
                    raise RuntimeError("every store writer has stopped")
                self._pump(block=True)
            self.waited += time.perf_counter() - start
        return self.free.popleft()

    def _pump(self, block: bool) -> None:
        """Read every answer that is waiting; with `block`, first wait for at least one."""
        conns = {self.lanes[k].conn: k for k in self.live}
        for conn in wait(list(conns), timeout=None if block else 0):
            lane = conns[conn]
            try:
                while lane in self.live and conn.poll():
                    self._answer(lane, conn.recv())
            except (EOFError, OSError):
                self._lane_lost(lane)

    def _answer(self, k: int, answer: tuple) -> None:
        lane, kind = self.lanes[k], answer[0]
        if kind == "free":
            lane.slots_out.discard(answer[1])
            self.free.append(answer[1])
        elif kind in ("done", "error", "skipped", "completed"):
            lane.open_videos.discard(answer[1])
            drop_claim(self.claims.pop(answer[1], ""))
            if kind == "error":
                self.errors.append((answer[1], answer[2]))
            elif kind == "skipped":
                self.skipped.append((answer[1], answer[2]))
            elif kind == "completed":
                self.completed.append((answer[1], answer[2]))
        elif kind == "ready":
            lane.ready = True
        elif kind == "stopped":
            self.live.discard(k)
        elif kind == "fatal":
            lane.fatal = answer[1]

    def _lane_lost(self, k: int) -> None:
        """A lane that ended unasked: its unfinished videos fail, its slots come back."""
        self.live.discard(k)
        lane = self.lanes[k]
        how = lane.end(timeout=5)
        self.errors += [(index, f"{how} before the video was written") for index in sorted(lane.open_videos)]
        for index in lane.open_videos:
            drop_claim(self.claims.pop(index, ""))
        lane.open_videos.clear()
        self.free.extend(lane.slots_out)
        lane.slots_out.clear()


if __name__ == "__main__":
    lane_process_main(int(sys.argv[1]), int(sys.argv[2]))
