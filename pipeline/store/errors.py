"""The feature store's errors, and the words its messages share."""

from __future__ import annotations

import errno

from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.store.format import CHUNK_FRAMES


def redo_hint(location: str) -> str:
    """What to do about a damaged video, said once for every message that reports one."""
    return f"`sal3d verify {location} --repair` marks it incomplete and the next `sal3d extract` redoes it"


class StoreError(Sal3dError):
    """A store that cannot be used as asked; the message names the store and the reason."""


class DamagedVideo(StoreError):
    """A complete video whose stored data does not match its record. The message names the store, the
    video, the array and the chunk (when one is to blame), what is wrong, and how to have it redone
    (`brief` is the same without that hint)."""

    def __init__(self, location: str, video_id: str, problem: str, array: str | None = None,
                 chunk: int | None = None, frame_count: int | None = None):
        self.location, self.video_id, self.array, self.chunk, self.problem = location, video_id, array, chunk, problem
        where = ""
        if array is not None:
            where = f"{array}"
            if chunk is not None:
                first = chunk * CHUNK_FRAMES
                last = first + CHUNK_FRAMES - 1 if frame_count is None else min(first + CHUNK_FRAMES, frame_count) - 1
                where += f" chunk {chunk} (frames {first}-{last})"
            where += ": "
        self.brief = f"{location}: video {video_id} is damaged: {where}{problem}"
        super().__init__(f"{self.brief}; {redo_hint(location)}")

    def __reduce__(self):  # across processes (a Dask task's error) it arrives as the StoreError it is
        return StoreError, (str(self),)


class VideoOwned(StoreError):
    """A video that another writer is writing (or has just completed); this writer leaves it alone."""


class VideoCompleted(VideoOwned):
    """A video that another writer completed meanwhile, from the same source: it is in the store,
    complete, and nothing is left to do for it."""


class UnreadableIndex(StoreError):
    """The store's ``videos`` group (``videos/zarr.json``, which holds the index) cannot be read; a
    store opened for writing (`sal3d verify --repair`, `sal3d extract`) rebuilds it from the records."""


class NotAVideo(StoreError):
    """A folder in the store's ``videos/`` that sal3d did not write (no group metadata, a Zarr array, a
    group without a sal3d record, or files sal3d never writes): never changed or removed."""


#: The errors of a write that the store refuses to this process, whatever is written.
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


class StoreWriteError(StoreError):
    """A write to the store that failed (a full disk, a read-only store). The message names the store,
    what could not be written and why; `read_only` is True when the store refuses every write."""

    def __init__(self, location: str, what: str, error: OSError):
        self.location, self.what, self.error = location, what, error
        self.read_only = error.errno in READ_ONLY_ERRNOS
        cause = (error.strerror or first_line(error)) if error.errno != errno.ENOSPC else "no space left on device"
        cause = cause[0].lower() + cause[1:] if cause else type(error).__name__
        if self.read_only:
            super().__init__(f"{location}: the store is read-only ({cause}): could not {what}")
        else:
            super().__init__(f"{location}: could not {what} ({cause}); what the store held before is kept")

    def __reduce__(self):  # across processes it arrives as the StoreError it is
        return StoreError, (str(self),)


def first_line(error: Exception) -> str:
    """An error's message for a one-line report: its first line (300 characters at most), or the
    error's type name when the message is empty."""
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def read_problem(error: Exception) -> str:
    """A chunk read's failure in words (Zarr's checksum message shows raw bytes, no cause)."""
    if "checksum" in str(error).lower():
        return "its CRC-32C checksum does not match its bytes (the chunk file was altered or cut short)"
    return f"cannot be read ({type(error).__name__}: {first_line(error)})"
