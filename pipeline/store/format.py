"""The feature store's format: one Zarr v3 group holding the trunk's relu5_3 features of a dataset.

Layout (FORMAT_VERSION 3)::

    STORE/                       attrs: format_version, trunk (fingerprint), layout, dataset
      videos/                    attrs: index ({video id: `VideoSummary`} of every complete video)
      videos/<video id>/         attrs: a `VideoRecord` (frame_count, sizes, source, split, frame_names,
                                        origin, trunk, complete, owner, integrity, ...)
        features                 float16 (T, 512, 14, 14), chunks (CHUNK_FRAMES, 512, 14, 14)
        maps                     uint8 (T, 224, 224), only when the dataset has ground truth

A video counts only when ``complete`` is true and its integrity record matches the store
(`pipeline.store.integrity`); readers and reruns treat any other video as absent. Any Zarr reader
works: ``zarr.open_group(STORE)["videos/0001/features"]`` or
``dask.array.from_zarr(STORE, component="videos/0001/features")``.

Older formats. Version 2 (no index) is read as it is, each record read one by one; opening it for
writing (extract, verify --repair) writes its index and makes it version 3, nothing redone. Version-1
stores (no checksums, no records) are refused with a message saying how to upgrade: ``sal3d
extract`` into the same store redoes their videos in the current format, or extract into a new
store.
"""

from __future__ import annotations

import hashlib
import json

from sal3d.pipeline.contract import FEATURE_SHAPE, INPUT_SIZE

FORMAT_VERSION = 3
#: Store formats whose features are the same numbers (2 added integrity, 3 the index; neither changed
#: a feature): a checkpoint trained on one reads the others.
FEATURE_COMPATIBLE_VERSIONS = (1, 2, 3)
#: The attribute of the `videos` group that holds the store index: {video id: `VideoSummary`} of
#: every complete video, kept current by the writers (see `pipeline.store.index`).
INDEX_ATTRIBUTE = "index"
CHUNK_FRAMES = 8
# Blosc zstd level 1 with byte shuffle in 512 KiB blocks. On the real DHF1K sample (random-weight
# features) it stores 97.6 KB/frame, as small as level 5 in Blosc's default blocks (96.9 KB), but
# compresses ~8x faster: 1,025 frames/s on one core against 131. Level 5 made the store writer
# the bottleneck of stage one on a GPU (341 frames/s on an H200); lz4 is faster still but 134 KB/frame.
# Reads run at >2,000 frames/s per core, far above what the decoder consumes. See
# benchmarks/extract_speed.py, which measures the candidates' size, write and read speeds.
FEATURE_CODEC = {"cname": "zstd", "clevel": 1, "shuffle": "shuffle", "blocksize": 512 * 1024}
MAP_CODEC = FEATURE_CODEC
# A flat chunk key per array ("c.3.0.0.0", not "c/3/0/0/0"): listing an array's chunks is one request.
CHUNK_KEYS = {"name": "default", "separator": "."}
# Chunks equal to the fill value are written too: with every chunk present, a missing one is damage.
WRITE_CONFIG = {"write_empty_chunks": True}
# Per array: frame shape, dtype, codec, and axis names. The names differ between the arrays (fy, fx:
# the 14x14 feature grid; my, mx: the 224x224 map) so that xarray can open a video group as one Dataset.
ARRAYS = {"features": ((*FEATURE_SHAPE,), "float16", FEATURE_CODEC, ("frame", "channel", "fy", "fx")),
          "maps": ((INPUT_SIZE, INPUT_SIZE), "uint8", MAP_CODEC, ("frame", "my", "mx"))}


def local_or_url(location) -> str:
    """A store location as Zarr opens it: ``file://`` URLs become plain paths (Zarr's local store
    creates the folders a new store needs); other URLs (``s3://``, ``gs://``, ``memory://``...) go to
    fsspec as they are, with credentials from the usual environment variables and config files."""
    location = str(location)
    return location[len("file://"):] if location.startswith("file://") else location


def trunk_digest(fingerprint: dict) -> str:
    """A short, stable digest of a trunk fingerprint, recorded in every video it made."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
