"""Integrity: checking a video's stored chunks against its record, and reading them with damage named.

Every chunk ends with its CRC-32C (Zarr's ``crc32c`` codec after Blosc), checked on every read before
Blosc sees the bytes, so a truncated or altered chunk is an error, never a crash or garbage. Every
chunk is stored, even one equal to the fill value, under a flat key (``c.<t>.0.0.0``), so one listing
per array shows them all. When a video is finished its record gets ``integrity``: per array, every
chunk's stored size and the CRC-32C of the data the writer gave it (`data_crc`). A reader checks the
listing against that record when it first opens a video (`pipeline.store.reading.check_chunks`):
a missing, truncated or extra chunk is refused before any of its data is used. Every read then compares
the data of each chunk it touches with the recorded CRC (`VideoArray`), so a valid chunk copied from
another position, another video or an older run is refused, never served; `sal3d verify` reads every
chunk that way. The cost, measured on a 2-core CPU: the loader's reads alone take about 7 % longer;
the whole loader's windows/s did not change beyond its run-to-run noise.
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
    """One array of a checked video: `array[selection]` reads as Zarr does (a selection on the frame
    axis: an index, a slice or an array of indices; anything else reads the whole array), and no
    damage is ever served: the whole chunks the selection touches are read, and each chunk's data is
    compared with the CRC-32C its writer recorded (`crcs`, one per chunk; None: not compared). A chunk
    whose stored checksum fails, or whose data is not what its writer wrote (a valid chunk copied from
    another position or video), is a `DamagedVideo` naming the chunk."""

    def __init__(self, location: str, video_id: str, name: str, array: zarr.Array, crcs: list[str] | None = None):
        self.location, self.video_id, self.name, self.array, self.crcs = location, video_id, name, array, crcs

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
        covered = chunk_cover(selection, self.array.shape[0])
        if covered is None:  # an empty or out-of-range selection: Zarr says what it says
            return self._read(selection)
        first, stop, within = covered
        count = self.array.shape[0]
        block = self._read(slice(first * CHUNK_FRAMES, min(stop * CHUNK_FRAMES, count)))
        if self.crcs is not None:
            for chunk in range(first, stop):
                offset = (chunk - first) * CHUNK_FRAMES
                found = data_crc(block[offset:offset + CHUNK_FRAMES])
                if found != self.crcs[chunk]:
                    raise DamagedVideo(self.location, self.video_id, f"its data is not what its writer wrote "
                                       f"(CRC-32C {found}, recorded {self.crcs[chunk]}): a chunk of another "
                                       "position, another video or an older run?", self.name, chunk, count)
        return block[within]

    def _read(self, selection):
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


def chunk_cover(selection, count: int) -> tuple[int, int, tuple] | None:
    """The whole chunks a selection of an array of `count` frames touches: (first chunk, chunk stop,
    the same selection relative to the first chunk's first frame), so that
    ``array[first * CHUNK_FRAMES:stop * CHUNK_FRAMES][within]`` is ``array[selection]``. The frame axis
    may be selected by an index, a slice (any step) or an array of integer indices; anything else
    (a mask, an Ellipsis first) covers every chunk. None when the selection picks no frame, or an
    index out of range (Zarr's own read then says so)."""
    key, rest = (selection[0], selection[1:]) if isinstance(selection, tuple) and selection else (selection, ())
    if isinstance(key, slice):
        start, stop, step = key.indices(count)
        picked = range(start, stop, step)
        if not picked:
            return None
        low, high = min(picked), max(picked) + 1
    elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not -count <= int(key) < count:
            return None
        low = int(key) % count
        high = low + 1
    else:
        indices = np.asarray(key) if isinstance(key, (list, np.ndarray)) else None
        if indices is None or indices.dtype.kind not in "iu" or indices.size == 0:
            return (0, math.ceil(count / CHUNK_FRAMES), selection) if count else None
        if (indices < -count).any() or (indices >= count).any():
            return None
        indices = indices % count
        low, high = int(indices.min()), int(indices.max()) + 1
    first, end = low // CHUNK_FRAMES, math.ceil(high / CHUNK_FRAMES)
    base = first * CHUNK_FRAMES
    if isinstance(key, slice):
        shifted = slice(start - base, stop - base if stop >= base else None, step)
    elif isinstance(key, (int, np.integer)):
        shifted = low - base
    else:
        shifted = indices - base
    return first, end, (shifted, *rest)
