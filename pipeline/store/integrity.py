"""Integrity: checking a video's stored chunks against its record, and reading them with damage named.

Every chunk ends with its CRC-32C (Zarr's ``crc32c`` codec after Blosc), checked on every read before
Blosc sees the bytes, so a truncated or altered chunk is an error, never a crash or garbage. Every
chunk is stored, even one equal to the fill value, under a flat key (``c.<t>.0.0.0``), so one listing
per array shows them all. When a video is finished its record gets ``integrity``: per array, every
chunk's stored size and the CRC-32C of the data the writer gave it (`data_crc`). A reader checks the
listing against that record when it first opens a video (`pipeline.store.reading.check_chunks`):
a missing, truncated or extra chunk is refused before any of its data is used. `sal3d verify` reads
everything and compares the data with the recorded CRCs as well (a valid chunk of another video or an
older run is caught there).
"""

from __future__ import annotations

import math

import google_crc32c
import numpy as np
import zarr

from sal3d.pipeline.store.errors import DamagedVideo, first_line, read_problem
from sal3d.pipeline.store.format import ARRAYS, CHUNK_FRAMES
from sal3d.pipeline.store.records import VideoRecord
from sal3d.pipeline.store.storage import store_listing


def data_crc(values: np.ndarray) -> str:
    """CRC-32C (hex) of an array's little-endian bytes: the recorded checksum of a chunk's data."""
    raw = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)
    raw.flags.writeable = False  # google_crc32c takes read-only buffers: this way, no copy
    return f"{google_crc32c.value(raw):08x}"



def chunk_sizes(store, path: str, ndim: int) -> dict[int, int | None] | None:
    """{chunk index along frames: stored bytes (None where the store cannot say)} of the `ndim`-D array
    at `path` of a Zarr store, written with CHUNK_KEYS (one listing); None when there is no such
    folder. Temporary files a killed write left are not chunks."""
    listing = store_listing(store, path)
    if listing is None:
        return None
    found = {}
    for name, size in listing.items():
        parts = name.split(".")
        if len(parts) == ndim + 1 and parts[0] == "c" and all(p.isdigit() for p in parts[1:]):
            if all(p == "0" for p in parts[2:]):
                found[int(parts[1])] = size
    return found



def checked_array(location: str, video_id: str, record: VideoRecord, group: zarr.Group, name: str) -> zarr.Array:
    """Array `name` of a checked video's `group` (read from store `location`), its metadata checked
    against the record and the format; DamagedVideo naming the array otherwise."""
    def damaged(problem):
        return DamagedVideo(location, video_id, problem, name, None, record.frame_count)

    shape, dtype, _, _ = ARRAYS[name]
    try:
        array = group[name]
    except Exception as error:
        raise damaged(f"its metadata cannot be read ({first_line(error)})") from None
    if array.shape != (record.frame_count, *shape) or array.dtype != np.dtype(dtype):
        raise damaged(f"shape {array.shape} {array.dtype}, the record says {(record.frame_count, *shape)} {dtype}")
    if array.chunks[0] != CHUNK_FRAMES or "crc32c" not in {c.to_dict()["name"] for c in array.metadata.codecs}:
        raise damaged("its chunks are not those this sal3d writes (chunks of "
                      f"{CHUNK_FRAMES} frames, each with a CRC-32C)")
    return array


class VideoArray:
    """One array of a checked video: `array[selection]` reads as Zarr does, and any damage found in the
    read (a chunk whose checksum fails) is a `DamagedVideo` naming the chunk."""

    def __init__(self, location: str, video_id: str, name: str, array: zarr.Array):
        self.location, self.video_id, self.name, self.array = location, video_id, name, array

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    chunks = property(lambda self: self.array.chunks)
    ndim = property(lambda self: self.array.ndim)

    def __len__(self) -> int:
        return self.array.shape[0]

    def nbytes_stored(self) -> int:
        return self.array.nbytes_stored()

    def __array__(self, dtype=None, copy=None):
        values = self[:]
        return values if dtype is None else values.astype(dtype)

    def __getitem__(self, selection):
        try:
            return self.array[selection]
        except MemoryError:
            raise
        except Exception as error:
            raise self._damage(selection, error) from None

    def _damage(self, selection, error: Exception) -> DamagedVideo:
        """Find the chunk to blame by reading the selection's chunks one at a time."""
        first = selection[0] if isinstance(selection, tuple) and selection else selection
        count = self.array.shape[0]
        if isinstance(first, slice):
            start, stop, _ = first.indices(count)
        elif isinstance(first, (int, np.integer)):
            start = int(first) % count if count else 0
            stop = start + 1
        else:
            start, stop = 0, count
        for chunk in range(start // CHUNK_FRAMES, math.ceil(stop / CHUNK_FRAMES)):
            try:
                self.array[chunk * CHUNK_FRAMES:min((chunk + 1) * CHUNK_FRAMES, count)]
            except Exception as chunk_error:
                return DamagedVideo(self.location, self.video_id, read_problem(chunk_error), self.name, chunk, count)
        return DamagedVideo(self.location, self.video_id, read_problem(error), self.name)

