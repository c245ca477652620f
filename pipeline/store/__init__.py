"""The feature store: one Zarr v3 group holding the trunk's relu5_3 features of a dataset.

Its modules, one job each:

- `format`: the format's version, layout, chunking and codecs (and the older formats).
- `errors`: `StoreError`, `DamagedVideo`, `VideoOwned`, `VideoCompleted`, `NotAVideo`, `StoreWriteError`,
  `UnreadableIndex`.
- `records`: what the store says of a video: `VideoRecord` (its group's attributes), `VideoSummary`
  (its index entry).
- `ownership`: a writer's claim on a video (`Owner`) and its lease.
- `storage`: listings and removals below Zarr's public API (the only module that uses its internals).
- `index`: the store index (the ``videos`` group's ``index`` attribute) and the lock its updates take.
- `integrity`: chunk checksums, checking a video's chunks against its record, `VideoArray`.
- `reading`: `StoreReader`, the reading half of `FeatureStore`: listing, records, checked arrays.
- `feature_store`: `FeatureStore`, the store opened for reading or extraction: opening, a video's
  state for a writer, claims, and keeping the index current.
- `writing`: `VideoWriter`, which writes one claimed video.
- `unfinished`: the videos readers leave out as not complete, and why (`unfinished_videos`).

Every name below imports from ``sal3d.pipeline.store`` as it always has.
"""

from sal3d.pipeline.store.errors import (
    DamagedVideo,
    NotAVideo,
    StoreError,
    StoreWriteError,
    UnreadableIndex,
    VideoCompleted,
    VideoOwned,
    redo_hint,
)
from sal3d.pipeline.store.feature_store import FeatureStore
from sal3d.pipeline.store.format import (
    ARRAYS,
    CHUNK_FRAMES,
    CHUNK_KEYS,
    FEATURE_CODEC,
    FEATURE_COMPATIBLE_VERSIONS,
    FORMAT_VERSION,
    INDEX_ATTRIBUTE,
    MAP_CODEC,
    WRITE_CONFIG,
    local_or_url,
    trunk_digest,
)
from sal3d.pipeline.store.integrity import VideoArray, chunk_sizes, data_crc
from sal3d.pipeline.store.ownership import LEASE_SECONDS, RENEW_SECONDS, SETTLE_SECONDS, Owner
from sal3d.pipeline.store.reading import CHECK_THREADS
from sal3d.pipeline.store.records import VideoFacts, VideoRecord, VideoSummary
from sal3d.pipeline.store.writing import VideoWriter

__all__ = [
    "ARRAYS", "CHECK_THREADS", "CHUNK_FRAMES", "CHUNK_KEYS", "FEATURE_CODEC", "FEATURE_COMPATIBLE_VERSIONS",
    "FORMAT_VERSION", "INDEX_ATTRIBUTE", "LEASE_SECONDS", "MAP_CODEC", "RENEW_SECONDS", "SETTLE_SECONDS",
    "WRITE_CONFIG", "DamagedVideo", "FeatureStore", "NotAVideo", "Owner", "StoreError", "StoreWriteError",
    "UnreadableIndex", "VideoArray", "VideoCompleted", "VideoFacts", "VideoOwned", "VideoRecord", "VideoSummary", "VideoWriter", "chunk_sizes", "data_crc", "local_or_url",
    "redo_hint", "trunk_digest",
]
