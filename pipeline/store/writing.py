"""Writing one claimed video: `VideoWriter`, which `FeatureStore.begin_video` returns.

The writer goes through the store's public writer API only: `FeatureStore.read_video_attrs` and
`write_video_attrs` (the claim and the record), `video_group_for_writing` (the arrays) and
`set_index_entry` (the index, once the video is complete).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Protocol

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from sal3d.pipeline.progress import say
from sal3d.pipeline.store.errors import StoreError, VideoCompleted, VideoOwned, first_line
from sal3d.pipeline.store.format import ARRAYS, CHUNK_FRAMES, CHUNK_KEYS, WRITE_CONFIG
from sal3d.pipeline.store.integrity import chunk_sizes, data_crc
from sal3d.pipeline.store.ownership import LEASE_SECONDS, RENEW_SECONDS, Owner, drop_claim
from sal3d.pipeline.store.records import VideoRecord, VideoSummary, now_iso


class WriterStore(Protocol):
    """What a `VideoWriter` uses of its store: `FeatureStore`'s public writer API."""

    location: str  # the store's path or URL, for messages
    settle_seconds: float  # how long a new claim waits before it is trusted (`pipeline.store.ownership`)

    def read_video_attrs(self, video_id: str) -> dict:
        """The video group's attributes as stored now (the claim's token, the record)."""

    def write_video_attrs(self, video_id: str, attrs: dict) -> None:
        """Replace the video group's attributes."""

    def video_group_for_writing(self, video_id: str) -> zarr.Group:
        """The video's group, open for writing its arrays."""

    def set_index_entry(self, video_id: str, summary: VideoSummary | None) -> None:
        """Put the video's summary in the store's index (None takes it out)."""


class VideoWriter:
    """Writes one claimed video in whole chunks and marks it complete with its integrity record.

    `append` takes features (n, 512, 14, 14) float16 and, when the video has maps, maps (n, 224, 224)
    uint8, for the next n frames in order; `finish` writes the tail, checks the claim is still this
    writer's and marks the video complete. `renew` extends the claim's lease (the writers call it as
    they write; an idle writer's host calls it); `release` gives the claim up (a failed video).
    """

    def __init__(self, store: WriterStore, video_id: str, record: VideoRecord, owner: Owner):
        self.store, self.video_id, self.record, self.owner = store, video_id, record, owner
        self.frame_count, self.with_maps = record.frame_count, record.has_maps
        self.written = 0
        self._features: list[np.ndarray] = []
        self._maps: list[np.ndarray] = []
        self._buffered = 0
        self._claimed_at = time.monotonic()
        self._confirmed = False
        self._renewed = time.time()
        self._arrays: dict[str, zarr.Array] = {}
        self._crcs: dict[str, list[str]] = {name: [] for name in record.arrays}

    @property
    def where(self) -> str:
        return f"{self.store.location}: video {self.video_id}"

    def append(self, features: np.ndarray, maps: np.ndarray | None = None) -> None:
        if self.with_maps and (maps is None or len(maps) != len(features)):
            raise ValueError("this video stores maps: give one map per frame")
        self._features.append(features)
        if self.with_maps:
            self._maps.append(maps)
        self._buffered += len(features)
        if self._buffered >= CHUNK_FRAMES:
            self._flush(whole_chunks_only=True)

    # ------------------------------------------------------------------ the claim

    def _check_claim(self) -> dict:
        """The group's attributes as stored now; VideoOwned if another writer's claim replaced ours."""
        try:
            attrs = self.store.read_video_attrs(self.video_id)
        except (StoreError, FileNotFoundError):
            raise VideoOwned(f"{self.where}: the video's group was removed or replaced while this run "
                             "wrote it (another run took it over)") from None
        holder = Owner.from_attrs(attrs.get("owner"))
        if holder is None or holder.token != self.owner.token:
            what = f"{holder.describe()}" if holder else "no owner"
            if attrs.get("complete"):
                raise VideoCompleted(f"{self.where}: completed by another run meanwhile ({what}); this run leaves it")
            raise VideoOwned(f"{self.where}: taken over by another run ({what}); this run leaves it")
        return attrs

    def _confirm(self) -> None:
        """Before the first write: let a concurrent claim land, make sure ours is the one that holds,
        then replace the video's old arrays by new empty ones."""
        wait = self.store.settle_seconds - (time.monotonic() - self._claimed_at)
        if wait > 0:
            time.sleep(wait)
        self._check_claim()
        group = self.store.video_group_for_writing(self.video_id)
        for name in ("features", "maps"):
            if name in group:
                del group[name]
        for name in self.record.arrays:
            shape, dtype, codec, dims = ARRAYS[name]
            self._arrays[name] = group.create_array(
                name, shape=(self.frame_count, *shape), chunks=(CHUNK_FRAMES, *shape), dtype=dtype,
                fill_value=0, compressors=[BloscCodec(**codec), Crc32cCodec()], chunk_key_encoding=CHUNK_KEYS,
                config=WRITE_CONFIG, dimension_names=dims)
        self._confirmed = True

    def renew(self) -> None:
        """Extend the lease (and check the claim is still ours)."""
        attrs = self._check_claim()
        owner = replace(self.owner, lease_until=time.time() + LEASE_SECONDS)
        attrs["owner"] = asdict(owner)
        self.store.write_video_attrs(self.video_id, attrs)
        self.owner, self._renewed = owner, time.time()

    def keep_alive(self) -> None:
        """Renew the lease when due (a writer's host calls this while it waits for data). A claim
        found lost is not raised here: the next write says so."""
        if time.time() - self._renewed >= RENEW_SECONDS:
            try:
                self.renew()
            except StoreError:
                pass

    def _ensure_claim(self) -> None:
        if not self._confirmed:
            self._confirm()
        elif time.time() - self._renewed >= RENEW_SECONDS:
            self.renew()

    def release(self) -> None:
        """Give the claim up (best effort), so that another run may redo the video at once."""
        drop_claim(self.owner.token)
        try:
            attrs = self._check_claim()
            attrs["owner"] = asdict(replace(self.owner, lease_until=0.0))
            self.store.write_video_attrs(self.video_id, attrs)
        except Exception:  # noqa: BLE001 (the video stays incomplete either way)
            pass

    # ------------------------------------------------------------------ the data

    def _flush(self, whole_chunks_only: bool) -> None:
        if not self._buffered:
            return
        if (whole_chunks_only and not self._confirmed
                and time.monotonic() - self._claimed_at < self.store.settle_seconds):
            return  # the claim is settling: the frames wait here (a few batches), not the writer's thread
        features = np.concatenate(self._features)
        count = (len(features) // CHUNK_FRAMES) * CHUNK_FRAMES if whole_chunks_only else len(features)
        if count == 0:
            return
        stop = self.written + count
        if stop > self.frame_count:
            raise ValueError(f"{self.where}: {stop} frames written, the video has {self.frame_count}")
        self._ensure_claim()
        parts = {"features": features}
        if self.with_maps:
            parts["maps"] = np.concatenate(self._maps)
        for name, values in parts.items():
            self._arrays[name][self.written:stop] = values[:count]
            # written chunk by chunk from the start (only the last flush can end inside a chunk)
            self._crcs[name] += [data_crc(values[k:k + CHUNK_FRAMES]) for k in range(0, count, CHUNK_FRAMES)]
        self._features = [features[count:]]
        if self.with_maps:
            self._maps = [parts["maps"][count:]]
        self.written, self._buffered = stop, len(features) - count

    def finish(self) -> None:
        """Write the tail, then mark the video complete with its integrity record (if still ours)."""
        self._flush(whole_chunks_only=False)
        if self.written != self.frame_count:
            raise ValueError(f"{self.where}: {self.written} of {self.frame_count} frames written")
        self._ensure_claim()
        integrity = {}
        for name, array in self._arrays.items():
            sizes = chunk_sizes(array.store_path.store, array.store_path.path, array.ndim) or {}
            missing = [k for k in range(self.record.chunk_count) if k not in sizes]
            if missing:
                raise StoreError(f"{self.where}: {name} chunk {missing[0]} is not in the store after it was "
                                 "written (another writer removed it?)")
            integrity[name] = {"sizes": [sizes[k] for k in range(self.record.chunk_count)], "crc32c": self._crcs[name]}
        attrs = self._check_claim()
        attrs.update(complete=True, integrity=integrity, completed=now_iso(),
                     owner=asdict(replace(self.owner, lease_until=0.0)))
        self.store.write_video_attrs(self.video_id, attrs)
        drop_claim(self.owner.token)
        try:  # into the index only once its record says complete
            self.store.set_index_entry(self.video_id, VideoSummary.of(VideoRecord.from_attrs(attrs, self.where)))
        except Exception as error:  # noqa: BLE001 (the video is complete; readers find it by its record)
            say(f"note: {self.where}: complete, but the store index was not updated ({first_line(error)}); "
                f"readers read its record instead, and `sal3d verify {self.store.location} --quick --repair` "
                "rewrites the index")

