"""The feature store: one Zarr v3 group holding the trunk's relu5_3 features of a dataset.

Layout (FORMAT_VERSION 1)::

    STORE/                       attrs: format_version, trunk (fingerprint), layout, dataset
      videos/<video id>/         attrs: complete, frame_count, height, width, fps, source, split,
                                        has_maps, has_fixations, frame_names
        features                 float16 (T, 512, 14, 14), chunks (CHUNK_FRAMES, 512, 14, 14)
        maps                     uint8 (T, 224, 224), only when the dataset has ground truth

A video is written with ``complete = false`` and flipped to ``true`` only after every chunk of
every array is written; readers and reruns treat any other video as absent. Any Zarr reader works:
``zarr.open_group(STORE)["videos/0001/features"]`` or
``dask.array.from_zarr(STORE, component="videos/0001/features")``.
"""

from __future__ import annotations

import numpy as np
import zarr

from pipeline.contract import FEATURE_SHAPE, INPUT_SIZE, fingerprint_mismatch
from pipeline.errors import Sal3dError

FORMAT_VERSION = 1
CHUNK_FRAMES = 8
# Blosc zstd level 1 with byte shuffle in 512 KiB blocks. On the real DHF1K sample (random-weight
# features) it stores 97.6 KB/frame, as small as level 5 in Blosc's default blocks (96.9 KB), but
# compresses ~8x faster: 1,025 frames/s on one core against 131. Level 5 made the store writer
# the bottleneck of stage one on a GPU (341 frames/s on an H200); lz4 is faster still but 134 KB/frame.
# Reads run at >2,000 frames/s per core, far above what the decoder consumes. See
# benchmarks/extract_speed.py, which measures the candidates' size, write and read speeds.
FEATURE_CODEC = {"cname": "zstd", "clevel": 1, "shuffle": "shuffle", "blocksize": 512 * 1024}
MAP_CODEC = FEATURE_CODEC


def local_or_url(location) -> str:
    """A store location as Zarr opens it: ``file://`` URLs become plain paths (Zarr's local store
    creates the folders a new store needs); other URLs (``s3://``, ``gs://``, ``memory://``...) go to
    fsspec as they are, with credentials from the usual environment variables and config files."""
    location = str(location)
    return location[len("file://"):] if location.startswith("file://") else location


class StoreError(Sal3dError):
    """A store that cannot be used as asked; the message names the store and the reason."""


class FeatureStore:
    """A feature store opened for reading (``mode="r"``) or for extraction (``mode="a"``).

    location: a local path or an fsspec URL (see `local_or_url`). For ``mode="a"`` an absent store is
    created with `trunk` as its fingerprint; an existing one must carry the same fingerprint.
    """

    def __init__(self, location: str, mode: str = "r", trunk: dict | None = None, dataset: dict | None = None):
        self.location = local_or_url(location)
        try:
            if mode == "r":
                self.root = zarr.open_group(self.location, mode="r")
            else:
                self.root = zarr.open_group(self.location, mode="a")
        except Exception as error:
            raise StoreError(f"{self.location}: cannot open as a feature store ({error})") from None
        attrs = dict(self.root.attrs)
        if "format_version" not in attrs:
            if mode == "r" or list(self.root.keys()):
                raise StoreError(f"{self.location}: not a sal3d feature store (no format_version attribute)")
            if trunk is None:
                raise StoreError(f"{self.location}: a new store needs a trunk fingerprint")
            self.root.attrs.update({"format_version": FORMAT_VERSION, "trunk": trunk, **(dataset or {})})
            self.root.require_group("videos")
            attrs = dict(self.root.attrs)
        if attrs["format_version"] != FORMAT_VERSION:
            raise StoreError(f"{self.location}: store format version {attrs['format_version']}, "
                             f"this sal3d reads version {FORMAT_VERSION}")
        if trunk is not None:
            mismatch = fingerprint_mismatch(attrs["trunk"], trunk)
            if mismatch:
                raise StoreError(f"{self.location}: made with another trunk, refusing to mix features "
                                 f"(store vs now: {mismatch})")
        self.videos_group = self.root.require_group("videos") if mode != "r" else self.root["videos"]

    @property
    def fingerprint(self) -> dict:
        return dict(self.root.attrs["trunk"])

    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    # ------------------------------------------------------------------ reading

    def video_ids(self, complete_only: bool = True) -> list[str]:
        """Ids of the videos in the store, sorted; by default only complete ones."""
        ids = sorted(self.videos_group.group_keys())
        return [v for v in ids if self.is_complete(v)] if complete_only else ids

    def is_complete(self, video_id: str) -> bool:
        """True when the video was fully written (an unreadable or partial group is not complete)."""
        try:
            group = self.videos_group[video_id]
            return group.attrs.get("complete") is True and group["features"].shape[0] == group.attrs["frame_count"]
        except Exception:
            return False

    def video_attrs(self, video_id: str) -> dict:
        return dict(self.videos_group[video_id].attrs)

    def features(self, video_id: str) -> zarr.Array:
        """float16 Zarr array (T, 512, 14, 14) of a video."""
        return self.videos_group[video_id]["features"]

    def maps(self, video_id: str) -> zarr.Array | None:
        """uint8 Zarr array (T, 224, 224) of a video's ground-truth maps, or None when it has none."""
        group = self.videos_group[video_id]
        return group["maps"] if "maps" in group else None

    # ------------------------------------------------------------------ writing

    def discard(self, video_id: str) -> None:
        """Remove whatever a video holds (an incomplete write, before it is redone)."""
        if video_id in self.videos_group:
            del self.videos_group[video_id]

    def begin_video(self, video_id: str, frame_count: int, with_maps: bool, attrs: dict) -> "VideoWriter":
        """Start (or restart from nothing) a video: its arrays are created empty, `complete` false."""
        self.discard(video_id)
        group = self.videos_group.create_group(
            video_id, attributes={**attrs, "frame_count": frame_count, "complete": False})
        group.create_array(
            "features", shape=(frame_count, *FEATURE_SHAPE), chunks=(CHUNK_FRAMES, *FEATURE_SHAPE),
            dtype="float16", fill_value=0, compressors=zarr.codecs.BloscCodec(**FEATURE_CODEC),
            dimension_names=("frame", "channel", "y", "x"))
        if with_maps:
            group.create_array(
                "maps", shape=(frame_count, INPUT_SIZE, INPUT_SIZE), chunks=(CHUNK_FRAMES, INPUT_SIZE, INPUT_SIZE),
                dtype="uint8", fill_value=0, compressors=zarr.codecs.BloscCodec(**MAP_CODEC),
                dimension_names=("frame", "y", "x"))
        return VideoWriter(group, frame_count, with_maps)


class VideoWriter:
    """Buffers one video's frames and writes them to the store in whole chunks.

    `append` takes features (n, 512, 14, 14) float16 and, when the video has maps, maps (n, 224, 224)
    uint8, for the next n frames in order; `finish` writes the tail and marks the video complete.
    """

    def __init__(self, group: zarr.Group, frame_count: int, with_maps: bool):
        self.group, self.frame_count, self.with_maps = group, frame_count, with_maps
        self.written = 0
        self._features: list[np.ndarray] = []
        self._maps: list[np.ndarray] = []
        self._buffered = 0

    def append(self, features: np.ndarray, maps: np.ndarray | None = None) -> None:
        if self.with_maps and (maps is None or len(maps) != len(features)):
            raise ValueError("this video stores maps: give one map per frame")
        self._features.append(features)
        if self.with_maps:
            self._maps.append(maps)
        self._buffered += len(features)
        if self._buffered >= CHUNK_FRAMES:
            self._flush(whole_chunks_only=True)

    def _flush(self, whole_chunks_only: bool) -> None:
        if not self._buffered:
            return
        features = np.concatenate(self._features)
        count = (len(features) // CHUNK_FRAMES) * CHUNK_FRAMES if whole_chunks_only else len(features)
        if count == 0:
            return
        stop = self.written + count
        if stop > self.frame_count:
            raise ValueError(f"{self.group.path}: {stop} frames written, the video has {self.frame_count}")
        self.group["features"][self.written:stop] = features[:count]
        self._features = [features[count:]]
        if self.with_maps:
            maps = np.concatenate(self._maps)
            self.group["maps"][self.written:stop] = maps[:count]
            self._maps = [maps[count:]]
        self.written, self._buffered = stop, len(features) - count

    def finish(self) -> None:
        self._flush(whole_chunks_only=False)
        if self.written != self.frame_count:
            raise ValueError(f"{self.group.path}: {self.written} of {self.frame_count} frames written")
        self.group.attrs["complete"] = True
