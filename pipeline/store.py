"""The feature store: one Zarr v3 group holding the trunk's relu5_3 features of a dataset.

Layout (FORMAT_VERSION 3)::

    STORE/                       attrs: format_version, trunk (fingerprint), layout, dataset
      videos/                    attrs: index ({video id: `VideoSummary`} of every complete video)
      videos/<video id>/         attrs: a `VideoRecord` (frame_count, sizes, source, split, frame_names,
                                        origin, trunk, complete, owner, integrity, ...)
        features                 float16 (T, 512, 14, 14), chunks (CHUNK_FRAMES, 512, 14, 14)
        maps                     uint8 (T, 224, 224), only when the dataset has ground truth

Integrity. Every chunk ends with its CRC-32C (Zarr's ``crc32c`` codec after Blosc), checked on every
read before Blosc sees the bytes, so a truncated or altered chunk is an error, never a crash or
garbage. Every chunk is stored, even one equal to the fill value, under a flat key (``c.<t>.0.0.0``),
so one listing per array shows them all. When a video is finished its record gets ``integrity``:
per array, every chunk's stored size and the CRC-32C of the data the writer gave it. A reader checks
the listing against that record when it first opens a video (`FeatureStore.check_video`): a missing,
truncated or extra chunk is refused before any of its data is used. `sal3d verify` reads everything
and compares the data with the recorded CRCs as well (a valid chunk of another video or an older run
is caught there).

Ownership. A video being written belongs to one writer: `begin_video` records an `Owner` (a token,
host, pid and a lease renewed while writing), waits `settle_seconds`, re-reads the token and only
then writes; the token is checked again before ``complete`` is set. A video owned by a live writer is
never touched by another (`VideoOwned`); an owner whose process is gone (same host) or whose lease
ran out (another host) has abandoned it, and the next writer takes it over.

A video counts only when ``complete`` is true and its integrity record matches the store; readers
and reruns treat any other video as absent. Any Zarr reader works:
``zarr.open_group(STORE)["videos/0001/features"]`` or
``dask.array.from_zarr(STORE, component="videos/0001/features")``.

The index. Listing a store's complete videos with their attributes is one read: the ``videos``
group's ``index`` attribute, a `VideoSummary` per complete video (the record without frame names,
origin, owner and integrity, plus the bytes its chunks take). Writers keep it current: a video
enters it after its record says complete (`VideoWriter.finish`) and leaves it before it is redone,
marked incomplete or discarded, so the index never lists a video its record does not. Updates are
read-modify-writes of that attribute, one at a time per process and, on a local store, across
processes (`_index_lock`); on an object store two writers finishing at once can lose one update.
So readers treat it as a guide: `complete_videos` checks it against one listing of the store (a
listed video the index lacks is read from its own record), `check_video` reads the record itself
and refuses a video rewritten since the index was read, and a writer's `state` (every video extract
or verify --repair visits) puts a stale entry right.

Older formats. Version 2 (no index) is read as it is, each record read one by one; opening it for
writing (extract, verify --repair) writes its index and makes it version 3, nothing redone. Version-1
stores (no checksums, no records) are refused with a message saying how to upgrade: ``sal3d
extract`` into the same store redoes their videos in the current format, or extract into a new
store.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from sal3d.pipeline.contract import FEATURE_SHAPE, INPUT_SIZE, fingerprint_mismatch
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.progress import say

try:
    import fcntl
except ImportError:  # not on Windows: the index lock is then per process only
    fcntl = None

FORMAT_VERSION = 3
#: Store formats whose features are the same numbers (2 added integrity, 3 the index; neither changed
#: a feature): a checkpoint trained on one reads the others.
FEATURE_COMPATIBLE_VERSIONS = (1, 2, 3)
#: The attribute of the `videos` group that holds the store index: {video id: `VideoSummary`} of
#: every complete video, kept current by the writers (see the module docstring).
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

LEASE_SECONDS = 300.0  # how long a writer's claim lasts without renewal (a writer on another host)
RENEW_SECONDS = 60.0  # a writer renews its lease at least this often while it writes
# Between writing its claim and writing data, a writer waits this long and re-reads the claim, so of
# two runs that claimed the same video at the same moment exactly one goes on (the last claim written
# wins; a claim is a single write, which lands within milliseconds locally, within ~1 s remotely).
SETTLE_SECONDS = {"local": 0.05, "remote": 1.0}
# Videos checked at once on a remote store (`FeatureStore.check_videos`): a check is 3 requests in a
# row (the group's metadata, then each array's chunk listing), so its latency, not its work, is the
# cost; 1,000 videos at 30 ms a request took 2.0 s in 64 threads (benchmarks/store_open.py).
CHECK_THREADS = 64



def redo_hint(location: str) -> str:
    """What to do about a damaged video, said once for every message that reports one."""
    return f"`sal3d verify {location} --repair` marks it incomplete and the next `sal3d extract` redoes it"


def local_or_url(location) -> str:
    """A store location as Zarr opens it: ``file://`` URLs become plain paths (Zarr's local store
    creates the folders a new store needs); other URLs (``s3://``, ``gs://``, ``memory://``...) go to
    fsspec as they are, with credentials from the usual environment variables and config files."""
    location = str(location)
    return location[len("file://"):] if location.startswith("file://") else location


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


def trunk_digest(fingerprint: dict) -> str:
    """A short, stable digest of a trunk fingerprint, recorded in every video it made."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def data_crc(values: np.ndarray) -> str:
    """CRC-32C (hex) of an array's little-endian bytes: the recorded checksum of a chunk's data."""
    raw = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)
    raw.flags.writeable = False  # google_crc32c takes read-only buffers: this way, no copy
    return f"{google_crc32c.value(raw):08x}"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------- owners


def _process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot); None when it is not running (a zombie
    waiting for its reaper has ended) or where /proc cannot say."""
    try:
        fields_after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields_after_name[0] in ("Z", "X") else int(fields_after_name[19])
    except (OSError, IndexError, ValueError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


#: Claims this process holds now: an owner with this process's pid but another token is a dead claim
#: of an earlier writer in the same process (a memory:// store's lanes are threads).
_HELD_TOKENS: set[str] = set()


@dataclass(frozen=True)
class Owner:
    """Who writes a video: a fresh token per claim, and enough to tell whether the writer still lives.

    Same host (and boot): alive while process `pid`, started at `process_start`, runs. Another host:
    alive until `lease_until` (seconds since the epoch), which the writer renews while it writes."""

    token: str
    host: str
    pid: int
    boot: str | None = None
    process_start: int | None = None
    lease_until: float = 0.0
    claimed: str = ""

    @classmethod
    def here(cls) -> Owner:
        pid = os.getpid()
        return cls(uuid.uuid4().hex, socket.gethostname(), pid, _boot_id(), _process_start(pid),
                   time.time() + LEASE_SECONDS, _now_iso())

    @classmethod
    def from_attrs(cls, value) -> Owner | None:
        if not isinstance(value, dict) or not isinstance(value.get("token"), str):
            return None
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in value.items() if k in known})
        except TypeError:
            return None

    def alive(self) -> bool:
        """True while the writer that holds this claim may still be writing: its lease runs and, on this
        host, its process too (so a killed writer's videos are free at once here)."""
        if time.time() >= self.lease_until:
            return False  # run out, or released
        if self.host == socket.gethostname() and (self.boot is None or self.boot == _boot_id()):
            if self.pid == os.getpid():
                return self.token in _HELD_TOKENS
            started = _process_start(self.pid)
            if started is not None or Path("/proc/self/stat").exists():
                return started is not None and (self.process_start is None or started == self.process_start)
        return True

    def describe(self) -> str:
        until = datetime.fromtimestamp(self.lease_until).strftime("%H:%M:%S")
        return f"pid {self.pid} on {self.host}, claimed {self.claimed}, lease until {until}"


# ---------------------------------------------------------------------------------------- records


@dataclass
class VideoFacts:
    """What both a video's own record and the store index say of a video (the fields they share).

    frame_count: frames stored (T). height, width: the source's frame size; fps: as the source
    claims (recorded, never used). source: the video file or frame folder, relative to the dataset.
    split: the dataset's split (train, val, test) or None. source_frame_count: frames the decoder
    found in the source; expected_frames: what the container declares, when that differs (a
    truncated file). has_maps, has_fixations: what ground truth the dataset had for it. trunk:
    `trunk_digest` of the trunk that made the features. completed: when it was marked complete.
    """

    frame_count: int
    height: int | None = None
    width: int | None = None
    fps: float | None = None
    source: str | None = None
    split: str | None = None
    source_frame_count: int | None = None
    expected_frames: int | None = None
    has_maps: bool = False
    has_fixations: bool = False
    trunk: str | None = None
    completed: str | None = None

    @classmethod
    def from_attrs(cls, attrs: dict, where: str = "video"):
        """The record of a group's attributes (or an index entry); unknown keys are ignored, a missing
        or non-integer frame_count is a StoreError naming `where`."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in dict(attrs).items() if k in known}
        count = values.get("frame_count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise StoreError(f"{where}: frame_count is {count!r}, not a number of frames")
        return cls(**values)

    def to_attrs(self) -> dict:
        return asdict(self)


@dataclass
class VideoRecord(VideoFacts):
    """The attributes of one video group: the one definition of what a store says about a video.

    The `VideoFacts`, and: frame_names: one name per stored frame (the prediction PNG names).
    origin: what was extracted ({"source", "content", "maps", "max_frames"}: see
    `pipeline.identity`), to skip only the same thing on a rerun. complete: the writer finished it.
    owner: the writer's claim (`Owner`). integrity: per array, {"sizes": stored bytes per chunk,
    "crc32c": CRC-32C of each chunk's data}, written with ``complete = true``. damage: why a
    complete video was marked incomplete (verify --repair, extract).
    """

    frame_names: list[str] | None = None
    origin: dict | None = None
    complete: bool = False
    owner: dict | None = None
    integrity: dict | None = None
    damage: str | None = None

    def fresh(self) -> VideoRecord:
        """This record as a video just begun: not complete, no owner, no integrity record."""
        return replace(self, complete=False, owner=None, integrity=None, completed=None, damage=None)

    @property
    def finished(self) -> bool:
        """Marked complete with an integrity record: what counts as complete before the chunks are checked."""
        return self.complete is True and self.integrity is not None

    @property
    def arrays(self) -> list[str]:
        return ["features", "maps"] if self.has_maps else ["features"]

    @property
    def chunk_count(self) -> int:
        return math.ceil(self.frame_count / CHUNK_FRAMES)

    def stable(self) -> dict:
        """The attributes that the same input always gives (no owner, no completion time)."""
        attrs = self.to_attrs()
        attrs.pop("owner"), attrs.pop("completed")
        return attrs


@dataclass
class VideoSummary(VideoFacts):
    """One entry of the store index: the `VideoFacts` of a complete video and the bytes its chunks
    take (`stored_bytes`, None where the store could not say). Frame names, origin and the integrity
    record stay in the video's own group: the index holds what listing and splitting a store need."""

    stored_bytes: int | None = None

    @classmethod
    def of(cls, record: VideoRecord) -> VideoSummary:
        sizes = [size for array in (record.integrity or {}).values() for size in array.get("sizes", [])]
        stored = None if not sizes or None in sizes else int(sum(sizes))
        return cls(**{f.name: getattr(record, f.name) for f in fields(VideoFacts)}, stored_bytes=stored)


# ---------------------------------------------------------------------------------------- listings


def _store_listing(store, path: str) -> dict[str, int | None] | None:
    """Names directly under `path` in a Zarr store, with their sizes in bytes where the store gives
    them in the same request (local folders, fsspec file systems); None when `path` is not there."""
    if isinstance(store, zarr.storage.LocalStore):
        folder = Path(store.root) / path
        try:
            with os.scandir(folder) as entries:
                return {e.name: (e.stat().st_size if e.is_file() else None) for e in entries}
        except (FileNotFoundError, NotADirectoryError):
            return None
    from zarr.core.sync import sync  # noqa: PLC0415 (an internal of zarr 3, present in 3.1 to 3.4)

    fs = getattr(store, "fs", None)
    if fs is not None and hasattr(fs, "_ls"):
        full = f"{store.path.rstrip('/')}/{path}".rstrip("/")
        try:
            try:  # never a cached listing (s3fs, gcsfs keep one): chunks may have come or gone since
                entries = sync(fs._ls(full, detail=True, refresh=True))
            except TypeError:
                entries = sync(fs._ls(full, detail=True))
        except FileNotFoundError:
            return None
        except Exception:  # a file system whose listing has no sizes: the names below still work
            entries = None
        if entries is not None:
            return {str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: (e.get("size") if e.get("type") == "file"
                                                                     else None) for e in entries}

    async def names():
        return [name async for name in store.list_dir(path)]

    found = sync(names())
    return {name: None for name in found} if found else None


def chunk_sizes(store, path: str, ndim: int) -> dict[int, int | None] | None:
    """{chunk index along frames: stored bytes (None where the store cannot say)} of the `ndim`-D array
    at `path` of a Zarr store, written with CHUNK_KEYS (one listing); None when there is no such
    folder. Temporary files a killed write left are not chunks."""
    listing = _store_listing(store, path)
    if listing is None:
        return None
    found = {}
    for name, size in listing.items():
        parts = name.split(".")
        if len(parts) == ndim + 1 and parts[0] == "c" and all(p.isdigit() for p in parts[1:]):
            if all(p == "0" for p in parts[2:]):
                found[int(parts[1])] = size
    return found


# ---------------------------------------------------------------------------------------- the store


class FeatureStore:
    """A feature store opened for reading (``mode="r"``) or for extraction (``mode="a"``).

    location: a local path or an fsspec URL (see `local_or_url`). For ``mode="a"`` an absent store is
    created with `trunk` as its fingerprint; an existing one must carry the same fingerprint, and a
    version-2 store gets its index (format 3; no video is redone). upgrade: a version-1 store opened
    with ``mode="a"`` becomes the current version, its videos incomplete (what extract does, before it
    redoes them); without it such a store is refused, as for reading.
    """

    def __init__(self, location: str, mode: str = "r", trunk: dict | None = None, dataset: dict | None = None,
                 upgrade: bool = False):
        self.location = local_or_url(location)
        self.writable = mode != "r"
        try:
            self.root = zarr.open_group(self.location, mode="a" if self.writable else "r", zarr_format=3)
        except Exception as error:
            raise StoreError(f"{self.location}: cannot open as a feature store ({error})") from None
        attrs = dict(self.root.attrs)
        if "format_version" not in attrs:
            if not self.writable or list(self.root.keys()):
                raise StoreError(f"{self.location}: not a sal3d feature store (no format_version attribute)")
            if trunk is None:
                raise StoreError(f"{self.location}: a new store needs a trunk fingerprint")
            self.root.create_group("videos", attributes={INDEX_ATTRIBUTE: {}})
            self.root.attrs.update({"format_version": FORMAT_VERSION, "trunk": trunk, **(dataset or {})})
            attrs = dict(self.root.attrs)
        if trunk is not None:
            mismatch = fingerprint_mismatch(attrs["trunk"], trunk)
            if mismatch:
                raise StoreError(f"{self.location}: made with another trunk, refusing to mix features "
                                 f"(store vs now: {mismatch})")
        version = attrs["format_version"]
        self.upgraded_from = None
        if version == 1 and self.writable and upgrade:
            # Extract upgrades a version-1 store by redoing its videos: they have no integrity record,
            # so every check below counts them as incomplete.
            self.upgraded_from = 1
        elif version == 1:
            raise StoreError(f"{self.location}: store format version 1 (no chunk checksums: a damaged chunk "
                             f"could crash the reader); upgrade it with `sal3d extract DATASET_DIR "
                             f"{self.location}` (redoes its videos in format {FORMAT_VERSION}) or extract "
                             "into a new store")
        elif version == 2 and self.writable:
            self.upgraded_from = 2
        elif version not in (2, FORMAT_VERSION):
            raise StoreError(f"{self.location}: store format version {version}, "
                             f"this sal3d reads versions 2 and {FORMAT_VERSION}")
        self.format_version = FORMAT_VERSION if self.upgraded_from else version
        self.videos_group = self.root.require_group("videos") if self.writable else self.root["videos"]
        self.trunk_digest = trunk_digest(attrs["trunk"])
        self.is_local = isinstance(self.root.store, zarr.storage.LocalStore)
        self.settle_seconds = SETTLE_SECONDS["local" if self.is_local else "remote"]
        self._checked: dict[str, VideoRecord] = {}
        self._groups: dict[str, zarr.Group] = {}  # groups of checked videos, metadata read once
        self._opened: dict[tuple[str, str], VideoArray] = {}  # arrays of checked videos
        self._unreadable: set[str] = set()  # groups whose unreadable metadata was said
        self._said_no_index = False
        self.index = _parse_index(self.videos_group.attrs.get(INDEX_ATTRIBUTE))
        if self.writable and (self.upgraded_from or self.index is None):
            self._rebuild_index()
            if self.upgraded_from:
                self.root.attrs["format_version"] = FORMAT_VERSION
            if self.upgraded_from == 2:
                say(f"{self.location}: store format 2 upgraded to {FORMAT_VERSION} (its index written: "
                    f"{len(self.index)} complete videos; no video redone)")

    @property
    def fingerprint(self) -> dict:
        return dict(self.root.attrs["trunk"])

    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    # ------------------------------------------------------------------ reading

    def _group_path(self, video_id: str) -> str:
        return f"{self.videos_group.path}/{video_id}"

    def listed_ids(self) -> list[str]:
        """Ids of every video group in the store, complete or not, sorted: one listing of the store."""
        listing = _store_listing(self.root.store, self.videos_group.path) or {}
        return sorted(name for name, size in listing.items()
                      if size is None and name != "zarr.json" and not name.startswith("."))

    def complete_videos(self) -> dict[str, VideoSummary]:
        """{video id: `VideoSummary`} of the complete videos, sorted by id: the index, as read when the
        store was opened, checked against one listing of the store. A listed video the index lacks (a
        store without an index, a video completed since, an index update lost to a concurrent writer on
        an object store) is read from its own record; a group whose metadata cannot be read is said
        once, by name, and left out."""
        if self.index is None and not self._said_no_index:
            self._said_no_index = True
            say(f"note: {self.location}: store format {self.format_version} without an index: listing it "
                f"reads every video's record; `sal3d verify {self.location} --quick --repair` writes the index")
        found = {}
        for video_id in self.listed_ids():
            summary = (self.index or {}).get(video_id)
            if summary is None:
                try:
                    record = self.video_record(video_id)
                except StoreError as error:
                    if video_id not in self._unreadable:
                        self._unreadable.add(video_id)
                        say(f"note: {error}; counted as incomplete (sal3d extract redoes it)")
                    continue
                if not record.finished:
                    continue
                summary = VideoSummary.of(record)
            found[video_id] = summary
        return found

    def video_ids(self, complete_only: bool = True) -> list[str]:
        """Ids of the videos in the store, sorted; by default only complete ones (`complete_videos`)."""
        return list(self.complete_videos()) if complete_only else self.listed_ids()

    def _open_group(self, video_id: str) -> zarr.Group:
        """A video's group, its metadata read from the store now (never a cached copy)."""
        try:
            return zarr.open_group(self.root.store, path=self._group_path(video_id), mode="r", zarr_format=3)
        except FileNotFoundError:
            raise
        except Exception as error:
            raise StoreError(f"{self.location}: video {video_id}: metadata cannot be read "
                             f"({type(error).__name__}: {_first_line(error)})") from None

    def _read_attrs(self, video_id: str) -> dict:
        """A video group's attributes, read from the store now (never a cached copy)."""
        return dict(self._open_group(video_id).attrs)

    def _record_of(self, video_id: str, group: zarr.Group) -> VideoRecord:
        return VideoRecord.from_attrs(dict(group.attrs), f"{self.location}: video {video_id}")

    def video_record(self, video_id: str) -> VideoRecord:
        """The video's `VideoRecord`; StoreError when the group is absent or its metadata unreadable."""
        try:
            group = self._open_group(video_id)
        except FileNotFoundError:
            raise StoreError(f"{self.location}: no video {video_id}") from None
        return self._record_of(video_id, group)

    def video_attrs(self, video_id: str) -> dict:
        """The video's attributes as a plain dict (see `VideoRecord` for what they hold)."""
        return self.video_record(video_id).to_attrs()

    def is_complete(self, video_id: str) -> bool:
        """True when the video is marked complete with an integrity record (its attributes alone: a
        reader's `check_video` also compares the chunks with the record)."""
        try:
            return self.video_record(video_id).finished
        except StoreError:
            return False

    def check_video(self, video_id: str) -> VideoRecord:
        """The record of a complete video whose stored chunks match it; DamagedVideo (or StoreError
        for an incomplete one, or one rewritten since the index was read) naming the video, the array
        and the chunk otherwise. Three requests: its group's metadata and one chunk listing per array
        (each array's own metadata is checked when it is first read); done once per video and store
        object."""
        if video_id in self._checked:
            return self._checked[video_id]
        try:
            group = self._open_group(video_id)
            record = self._record_of(video_id, group)
        except FileNotFoundError:
            raise StoreError(f"{self.location}: no video {video_id}") from None
        except StoreError as error:
            raise StoreError(f"{error}; {redo_hint(self.location)}") from None
        return self._check_read(video_id, group, record)

    def _check_read(self, video_id: str, group: zarr.Group, record: VideoRecord) -> VideoRecord:
        """`check_video` of a video whose group and record were just read."""
        if not record.complete:
            raise StoreError(f"{self.location}: video {video_id} is incomplete (an interrupted or failed "
                             "extract? rerun sal3d extract)")
        indexed = (self.index or {}).get(video_id)
        if indexed is not None and (indexed.frame_count, indexed.has_maps) != (record.frame_count, record.has_maps):
            raise StoreError(f"{self.location}: video {video_id} was rewritten after this store was opened (the "
                             f"index said {indexed.frame_count} frames, its record says {record.frame_count}): "
                             "start again")
        self._check_chunks(video_id, record)
        self._checked[video_id], self._groups[video_id] = record, group
        return record

    def _check_chunks(self, video_id: str, record: VideoRecord) -> None:
        def damaged(problem, array=None, chunk=None):
            return DamagedVideo(self.location, video_id, problem, array, chunk, record.frame_count)

        if record.integrity is None:
            raise damaged("marked complete without an integrity record (set by hand, or by an older sal3d)")
        if record.trunk != self.trunk_digest:
            raise damaged(f"made with trunk {record.trunk}, the store's is {self.trunk_digest} "
                          "(a group copied from another store?)")
        for name in record.arrays:
            expected = record.integrity.get(name, {})
            sizes = expected.get("sizes", [])
            if len(sizes) != record.chunk_count or len(expected.get("crc32c", [])) != record.chunk_count:
                raise damaged(f"the integrity record lists {len(sizes)} chunks, the array has "
                              f"{record.chunk_count}", name)
            # the chunk listing alone: the array's own metadata is checked when it is opened (`_array`),
            # which keeps this check at 3 requests a video (train-decoder checks every video up front)
            found = chunk_sizes(self.root.store, f"{self._group_path(video_id)}/{name}", 1 + len(ARRAYS[name][0]))
            if found is None:
                raise damaged("array missing", name)
            for chunk, size in enumerate(sizes):
                if chunk not in found:
                    raise damaged("chunk file missing (deleted, or not copied)", name, chunk)
                if None not in (found[chunk], size) and found[chunk] != size:
                    raise damaged(f"chunk file holds {found[chunk]} bytes, {size} were written "
                                  "(truncated or replaced)", name, chunk)
            extra = sorted(set(found) - set(range(record.chunk_count)))
            if extra:
                raise damaged(f"chunk file {extra[0]} lies beyond the video's {record.frame_count} frames", name)

    def _array(self, video_id: str, name: str) -> VideoArray | None:
        record = self.check_video(video_id)
        if name not in record.arrays:
            return None
        if (video_id, name) not in self._opened:
            self._opened[video_id, name] = VideoArray(self.location, video_id, name,
                                                      self._open_array(video_id, record, name))
        return self._opened[video_id, name]

    def _open_array(self, video_id: str, record: VideoRecord, name: str) -> zarr.Array:
        """One array of a checked video, its metadata checked against the record and the format."""
        def damaged(problem):
            return DamagedVideo(self.location, video_id, problem, name, None, record.frame_count)

        shape, dtype, _, _ = ARRAYS[name]
        try:
            array = self._groups[video_id][name]
        except Exception as error:
            raise damaged(f"its metadata cannot be read ({_first_line(error)})") from None
        if array.shape != (record.frame_count, *shape) or array.dtype != np.dtype(dtype):
            raise damaged(f"shape {array.shape} {array.dtype}, the record says {(record.frame_count, *shape)} {dtype}")
        if array.chunks[0] != CHUNK_FRAMES or "crc32c" not in {c.to_dict()["name"] for c in array.metadata.codecs}:
            raise damaged("its chunks are not those this sal3d writes (chunks of "
                          f"{CHUNK_FRAMES} frames, each with a CRC-32C)")
        return array

    def features(self, video_id: str) -> VideoArray:
        """float16 (T, 512, 14, 14) of a complete video, checked against its record (`check_video`)."""
        return self._array(video_id, "features")

    def maps(self, video_id: str) -> VideoArray | None:
        """uint8 (T, 224, 224) ground-truth maps of a complete video, or None when it has none."""
        return self._array(video_id, "maps")

    def check_videos(self, video_ids: list[str]) -> tuple[list[str], dict[str, str]]:
        """(the videos that pass `check_video`, {video id: why not} for the others), in order. On a
        remote store the videos are checked CHECK_THREADS at a time: each check is a few requests whose
        latency, not their work, is the cost."""
        def check(video_id):
            try:
                self.check_video(video_id)
                return None
            except StoreError as error:
                return str(error)

        if self.is_local or len(video_ids) < 2:
            problems = [check(v) for v in video_ids]
        else:
            with ThreadPoolExecutor(CHECK_THREADS) as pool:
                problems = list(pool.map(check, video_ids))
        good = [v for v, problem in zip(video_ids, problems) if problem is None]
        return good, {v: problem for v, problem in zip(video_ids, problems) if problem is not None}

    # ------------------------------------------------------------------ state for extract and verify

    def state(self, video_id: str) -> tuple[str, VideoRecord | None, str]:
        """(state, record, why) of a video as a writer sees it. state: ``absent``; ``unreadable``
        (its metadata is missing or cannot be read); ``owned`` (incomplete, its writer alive);
        ``incomplete`` (abandoned: free to redo); ``damaged`` (complete, but the chunks do not match the
        record); ``complete``. `why` says it in words. On a writable store the video's index entry is
        made to agree with its record on the way (so a rerun of extract repairs a stale index)."""
        try:
            group = self._open_group(video_id)
            record = self._record_of(video_id, group)
        except FileNotFoundError:
            self._sync_index(video_id, None)
            if not _store_listing(self.root.store, self._group_path(video_id)):
                return "absent", None, ""
            return "unreadable", None, f"{self.location}: video {video_id}: metadata missing (no zarr.json)"
        except StoreError as error:
            self._sync_index(video_id, None)
            return "unreadable", None, str(error)
        self._sync_index(video_id, record)
        if not record.complete:
            owner = Owner.from_attrs(record.owner)
            if owner is not None and owner.alive():
                return "owned", record, f"being written by another run ({owner.describe()})"
            return "incomplete", record, record.damage or "incomplete (an interrupted or failed run)"
        try:
            self._forget(video_id)
            self._check_read(video_id, group, record)
        except StoreError as error:
            return "damaged", record, getattr(error, "brief", str(error))
        return "complete", record, ""

    # ------------------------------------------------------------------ writing

    def _forget(self, video_id: str) -> None:
        """Drop what this object knows of a video (its check, its open arrays): it is being changed."""
        self._checked.pop(video_id, None)
        self._groups.pop(video_id, None)
        self._opened.pop((video_id, "features"), None)
        self._opened.pop((video_id, "maps"), None)

    def discard(self, video_id: str) -> None:
        """Remove whatever a video holds, readable or not."""
        self._forget(video_id)
        self._update_index(video_id, None)
        from zarr.core.sync import sync  # noqa: PLC0415 (see _store_listing)

        sync(self.root.store.delete_dir(self._group_path(video_id)))

    def mark_incomplete(self, video_id: str, why: str) -> None:
        """Flag a complete video as incomplete (damaged: the next extract redoes it); a group whose
        metadata cannot be read is discarded instead."""
        self._forget(video_id)
        try:
            attrs = self._read_attrs(video_id)
        except StoreError:
            self.discard(video_id)
            return
        attrs.update(complete=False, owner=None, damage=why)
        self._update_index(video_id, None)  # out of the index before its record says so: never the reverse
        self._write_attrs(video_id, attrs)

    def _write_attrs(self, video_id: str, attrs: dict) -> None:
        group = zarr.open_group(self.root.store, path=self._group_path(video_id), mode="r+", zarr_format=3)
        group.attrs.put(attrs)

    # ------------------------------------------------------------------ the index

    def _sync_index(self, video_id: str, record: VideoRecord | None) -> None:
        """On a writable store, make the video's index entry agree with its record (None: no group)."""
        if not self.writable:
            return
        wanted = VideoSummary.of(record) if self._indexable(record) else None
        if wanted != (self.index or {}).get(video_id):
            self._update_index(video_id, wanted)

    def _indexable(self, record: VideoRecord | None) -> bool:
        """Whether a video with this record belongs in the index: complete, made by this store's trunk."""
        return record is not None and record.finished and record.trunk == self.trunk_digest

    def _update_index(self, video_id: str, summary: VideoSummary | None) -> None:
        """Set one video's index entry (None: remove it) by rewriting the `videos` group's attributes:
        read now, changed, written back, under `_index_lock` (one writer at a time across processes
        on a local store; see the module docstring for other stores)."""
        def edit(entries: dict) -> dict | None:
            if summary is None:
                return None if video_id not in entries else {k: v for k, v in entries.items() if k != video_id}
            return dict(sorted({**entries, video_id: summary.to_attrs()}.items()))

        self._rewrite_index(edit)

    def _rebuild_index(self) -> None:
        """Write the index anew from every video's own record (a store without one, or upgraded)."""
        entries = {}
        for video_id in self.listed_ids():
            try:
                record = self.video_record(video_id)
            except StoreError:
                continue
            if self._indexable(record):
                entries[video_id] = VideoSummary.of(record).to_attrs()
        self._rewrite_index(lambda _: entries)

    def _rewrite_index(self, edit) -> None:
        """Under `_index_lock`, read the index as stored now, and write back ``edit(entries)`` (None:
        leave it as it is); this object's `index` becomes what is stored."""
        if not self.writable:
            raise StoreError(f"{self.location}: opened for reading, its index cannot change")
        with _index_lock(self):
            group = zarr.open_group(self.root.store, path=self.videos_group.path, mode="r+", zarr_format=3)
            attrs = dict(group.attrs)
            entries = edit(dict(attrs.get(INDEX_ATTRIBUTE) or {}))
            if entries is not None:
                group.attrs.put({**attrs, INDEX_ATTRIBUTE: entries})
            self.index = _parse_index(entries if entries is not None else attrs.get(INDEX_ATTRIBUTE) or {})

    def begin_video(self, video_id: str, frame_count: int, with_maps: bool, attrs: dict | VideoRecord,
                    owner: Owner | None = None) -> VideoWriter:
        """Claim a video and return its writer; its old content (if any) is replaced once the claim
        holds (see the module docstring). `attrs` is a `VideoRecord` or a dict of its fields;
        `owner` defaults to a fresh claim of this process. Raises `VideoOwned` when another live
        writer holds the video, or completed the same extraction meanwhile."""
        base = attrs if isinstance(attrs, VideoRecord) else VideoRecord.from_attrs(
            {**attrs, "frame_count": frame_count}, f"{self.location}: video {video_id}")
        record = replace(base.fresh(), frame_count=frame_count, has_maps=bool(with_maps), trunk=self.trunk_digest)
        state, old, why = self.state(video_id)
        if state == "owned":
            raise VideoOwned(f"{self.location}: video {video_id}: {why}")
        if state == "complete" and record.origin is not None and old.origin == record.origin:
            raise VideoOwned(f"{self.location}: video {video_id}: completed by another run meanwhile")
        owner = owner or Owner.here()
        if video_id in (self.index or {}):  # out of the index before its old content goes
            self._update_index(video_id, None)
        claim = replace(record, owner=asdict(owner)).to_attrs()
        if state in ("absent", "unreadable"):
            if state == "unreadable":
                self.discard(video_id)
            self.videos_group.create_group(video_id, attributes=claim, overwrite=True)
        else:
            self._write_attrs(video_id, claim)
        self._forget(video_id)
        _HELD_TOKENS.add(owner.token)
        return VideoWriter(self, video_id, record, owner)


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
                return DamagedVideo(self.location, self.video_id, _read_problem(chunk_error), self.name, chunk, count)
        return DamagedVideo(self.location, self.video_id, _read_problem(error), self.name)


class VideoWriter:
    """Writes one claimed video in whole chunks and marks it complete with its integrity record.

    `append` takes features (n, 512, 14, 14) float16 and, when the video has maps, maps (n, 224, 224)
    uint8, for the next n frames in order; `finish` writes the tail, checks the claim is still this
    writer's and marks the video complete. `renew` extends the claim's lease (the writers call it as
    they write; an idle writer's host calls it); `release` gives the claim up (a failed video).
    """

    def __init__(self, store: FeatureStore, video_id: str, record: VideoRecord, owner: Owner):
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
            attrs = self.store._read_attrs(self.video_id)
        except (StoreError, FileNotFoundError):
            raise VideoOwned(f"{self.where}: the video's group was removed or replaced while this run "
                             "wrote it (another run took it over)") from None
        holder = Owner.from_attrs(attrs.get("owner"))
        if holder is None or holder.token != self.owner.token:
            what = f"{holder.describe()}" if holder else "no owner"
            raise VideoOwned(f"{self.where}: taken over by another run ({what}); this run leaves it")
        return attrs

    def _confirm(self) -> None:
        """Before the first write: let a concurrent claim land, make sure ours is the one that holds,
        then replace the video's old arrays by new empty ones."""
        wait = self.store.settle_seconds - (time.monotonic() - self._claimed_at)
        if wait > 0:
            time.sleep(wait)
        self._check_claim()
        group = zarr.open_group(self.store.root.store, path=self.store._group_path(self.video_id), mode="r+")
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
        self.store._write_attrs(self.video_id, attrs)
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
        _HELD_TOKENS.discard(self.owner.token)
        try:
            attrs = self._check_claim()
            attrs["owner"] = asdict(replace(self.owner, lease_until=0.0))
            self.store._write_attrs(self.video_id, attrs)
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
        attrs.update(complete=True, integrity=integrity, completed=_now_iso(),
                     owner=asdict(replace(self.owner, lease_until=0.0)))
        self.store._write_attrs(self.video_id, attrs)
        _HELD_TOKENS.discard(self.owner.token)
        try:  # into the index only once its record says complete
            self.store._update_index(self.video_id, VideoSummary.of(VideoRecord.from_attrs(attrs, self.where)))
        except Exception as error:  # noqa: BLE001 (the video is complete; readers find it by its record)
            say(f"note: {self.where}: complete, but the store index was not updated ({_first_line(error)}); "
                f"readers read its record instead, and `sal3d verify {self.store.location} --quick --repair` "
                "rewrites the index")


def _parse_index(value) -> dict[str, VideoSummary] | None:
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


_INDEX_THREAD_LOCK = threading.Lock()


@contextmanager
def _index_lock(store: FeatureStore) -> Iterator[None]:
    """Held while the index is rewritten: by one thread of this process at a time and, on a local
    store, by one process at a time (an exclusive flock on the `videos` folder). Object stores have no
    such lock: there two writers finishing at the same moment can lose one update, which costs readers
    one read of that video's record (`FeatureStore.complete_videos`), never a wrong answer."""
    with _INDEX_THREAD_LOCK:
        if not store.is_local or fcntl is None:
            yield
            return
        descriptor = os.open(Path(store.root.store.root) / store.videos_group.path, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock


def _read_problem(error: Exception) -> str:
    """A chunk read's failure in words (Zarr's checksum message shows raw bytes, no cause)."""
    if "checksum" in str(error).lower():
        return "its CRC-32C checksum does not match its bytes (the chunk file was altered or cut short)"
    return f"cannot be read ({type(error).__name__}: {_first_line(error)})"


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
