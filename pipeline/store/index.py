"""The store index: the ``videos`` group's ``index`` attribute, and the lock its rewrites take.

Listing a store's complete videos with their attributes is one read: the ``videos`` group's
``index`` attribute, a `VideoSummary` per complete video (the record without frame names, origin,
owner and integrity, plus the bytes its chunks take). Writers keep it current: a video enters it
after its record says complete (`VideoWriter.finish`) and leaves it before it is redone, marked
incomplete or discarded, so the index never lists a video its record does not. Updates are
read-modify-writes of that attribute, one at a time per process and, on a local store, across
processes (`index_lock`); on an object store two writers finishing at once can lose one update.
So readers treat it as a guide: `FeatureStore.complete_videos` checks it against one listing of the
store (a listed video the index lacks is read from its own record), `FeatureStore.check_video` reads
the record itself (an entry it contradicts is said and the record used; a video rewritten since the
index was read is refused), plans for training take their counts and splits from the checked records,
and a writer's `FeatureStore.state` (every video extract or verify --repair visits) puts a stale entry
right. A ``videos`` group whose metadata cannot be read is rebuilt from the records by writers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import zarr

from sal3d.pipeline.store.errors import StoreError
from sal3d.pipeline.store.format import INDEX_ATTRIBUTE
from sal3d.pipeline.store.records import VideoSummary

try:
    import fcntl
except ImportError:  # not on Windows: the index lock is then per process only
    fcntl = None

#: An edit of the index entries ({video id: summary attributes}): the entries to write, or None to
#: leave the index as it is.
IndexEdit = Callable[[dict], dict | None]


def parse_index(value) -> dict[str, VideoSummary] | None:
    """The index attribute as {video id: VideoSummary}; None when there is none. A malformed entry is
    left out: readers then read that video's own record."""
    if not isinstance(value, dict):
        return None
    index = {}
    for video_id, entry in value.items():
        try:
            index[video_id] = VideoSummary.from_attrs(entry)
        except (StoreError, TypeError, ValueError):
            continue
    return index


def entry_edit(video_id: str, summary: VideoSummary | None) -> IndexEdit:
    """The edit that sets one video's entry to `summary` (None: removes it; no write when it is not
    there). Entries stay sorted by video id."""
    def edit(entries: dict) -> dict | None:
        if summary is None:
            return None if video_id not in entries else {k: v for k, v in entries.items() if k != video_id}
        return dict(sorted({**entries, video_id: summary.to_attrs()}.items()))

    return edit


def rewrite_index(group: zarr.Group, edit: IndexEdit) -> dict:
    """Read the index attribute of the ``videos`` `group` as stored now, write back ``edit(entries)``
    (None: leave it as it is) and return the entries stored afterwards. Call it under `index_lock`."""
    attrs = dict(group.attrs)
    entries = edit(dict(attrs.get(INDEX_ATTRIBUTE) or {}))
    if entries is not None:
        group.attrs.put({**attrs, INDEX_ATTRIBUTE: entries})
    return entries if entries is not None else attrs.get(INDEX_ATTRIBUTE) or {}


_INDEX_THREAD_LOCK = threading.Lock()


@contextmanager
def index_lock(folder: Path | None) -> Iterator[None]:
    """Held while the index is rewritten: by one thread of this process at a time and, on a local
    store (`folder`: its ``videos`` folder; None for other stores), by one process at a time (an
    exclusive flock on that folder). Object stores have no such lock: there two writers finishing at
    the same moment can lose one update, which costs readers one read of that video's record
    (`FeatureStore.complete_videos`), never a wrong answer."""
    with _INDEX_THREAD_LOCK:
        if folder is None or fcntl is None:
            yield
            return
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock
