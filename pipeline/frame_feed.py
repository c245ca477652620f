"""Frames of any iterable, pulled in a background thread and cut into trunk batches under a latency bound.

`FrameFeed` pulls frames from an iterable (a live source blocks between frames) into a small bounded
queue: the thread blocks when the queue is full (back-pressure: memory stays bounded), ends when the
feed is closed, and an exception of the iterable is handed to the consumer in the frames' order.
Each frame is checked (uint8 (H, W, 3), the first frame's size) and prepared (`prepare`, the trunk's
resize) in that thread, so the consumer's device time overlaps it.

`FrameFeed.batches` cuts the queued frames into batches (the latency rule in its docstring).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

__all__ = ["FrameFeed"]

_END = object()  # the iterable is exhausted
_POLL = 0.1  # seconds between the producer's checks of `closed` while the queue is full


class FrameFeed:
    """A background thread pulling frames from `frames` into a queue of `capacity` items.

    frames: any iterable of uint8 (H, W, 3) frames, all of the first one's size.
    prepare: frame -> what a batch holds (e.g. the trunk's resize to (224, 224, 3)).
    frame_shape: the first frame's (H, W, 3), once `batches` has yielded its first batch.
    Use as a context manager (or call `close`): closing stops the thread at its next frame.
    """

    def __init__(self, frames: Iterable[np.ndarray], prepare: Callable[[np.ndarray], np.ndarray], capacity: int):
        self.frames, self.prepare = frames, prepare
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, capacity))
        self.closed = threading.Event()
        self.frame_shape: tuple[int, ...] | None = None
        self.seconds_per_frame: float | None = None  # the batches' measured cost, once one has run
        self.thread = threading.Thread(target=self._pull, name="frame-feed", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop the thread: it ends once its blocking `next()` on the iterable returns."""
        self.closed.set()

    def __enter__(self) -> FrameFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _put(self, item) -> bool:
        """Queue `item`, waiting while the queue is full; False once the feed is closed."""
        while not self.closed.is_set():
            try:
                self.queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _pull(self) -> None:
        try:
            for index, frame in enumerate(self.frames):
                arrived = time.monotonic()
                if not self._put((arrived, self.prepare(self._checked(index, frame)))):
                    return
                if self.closed.is_set():
                    return
        except BaseException as error:  # the iterable's (or a bad frame's) error, raised in the consumer
            self._put(error)
            return
        self._put(_END)

    def _checked(self, index: int, frame) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame {index}: a frame must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        if self.frame_shape is None:
            self.frame_shape = frame.shape
        elif frame.shape != self.frame_shape:
            (h, w), (h0, w0) = frame.shape[:2], self.frame_shape[:2]
            raise ValueError(f"frame {index} is {w}x{h} (WxH), but the stream's frames are {w0}x{h0} "
                             "(the first frame's size)")
        return frame

    def batches(self, max_batch: int, max_latency: float | None) -> Iterator[np.ndarray]:
        """The queued frames as batches (n, ...) of `prepare`'s outputs, n <= max_batch, in order.

        The latency rule: a batch is cut when it holds max_batch frames, or when the next frame is not
        already waiting and waiting for it would make the batch's oldest frame (counted from when the
        iterable gave it) wait beyond max_latency seconds, its compute included. The compute time of a
        batch of n frames is estimated as n times the seconds per frame of the batches so far (the
        time from handing a batch out to being asked for the next: trunk, decoder and the caller's own
        handling of its maps); before the first batch has run, a batch takes only frames already
        waiting. max_latency None: no bound (batches of max_batch, the last one shorter). An error of
        the iterable is raised after the batch of the frames before it.
        """
        error, ended = None, False
        frames_done, seconds_done = 0, 0.0
        while not (ended or error):
            item = self.queue.get()
            if item is _END or isinstance(item, BaseException):
                error, ended = (item if item is not _END else None), True
                break
            oldest, batch = item[0], [item[1]]
            while len(batch) < max_batch:
                wait = self._wait_for_next(oldest, len(batch) + 1, max_latency)
                try:
                    item = self.queue.get(timeout=wait) if wait is None or wait > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is _END or isinstance(item, BaseException):
                    error, ended = (item if item is not _END else None), True
                    break
                batch.append(item[1])
            handed = time.monotonic()
            yield np.stack(batch)
            frames_done, seconds_done = frames_done + len(batch), seconds_done + time.monotonic() - handed
            self.seconds_per_frame = seconds_done / frames_done
        if error is not None:
            raise error

    def _wait_for_next(self, oldest: float, size: int, max_latency: float | None) -> float | None:
        """Seconds to wait for one more frame, for a batch of `size` frames whose oldest arrived at
        `oldest`: None for no bound, <= 0 to take only a frame already waiting."""
        if max_latency is None:
            return None
        if self.seconds_per_frame is None:
            return 0.0
        return oldest + max_latency - size * self.seconds_per_frame - time.monotonic()
