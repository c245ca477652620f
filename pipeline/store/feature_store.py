"""`FeatureStore`: a feature store opened for reading or for extraction.

Opening checks the format (`pipeline.store.format`) and the trunk, creates a new store, and upgrades
an older format opened for writing. Reading is `StoreReader`'s (`pipeline.store.reading`). Writing: a
video's state as a writer sees it (`state`), claiming a video (`begin_video`, which returns its
`VideoWriter`: `pipeline.store.writing`), marking it incomplete or discarding it, and keeping the
index current (`pipeline.store.index`). What a `VideoWriter` needs of the store is public and
documented: `read_video_attrs`, `write_video_attrs`, `video_group_for_writing`, `set_index_entry`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import zarr

from sal3d.pipeline.contract import fingerprint_mismatch
from sal3d.pipeline.progress import say
from sal3d.pipeline.store.errors import (
    NotAVideo,
    StoreError,
    StoreWriteError,
    UnreadableIndex,
    VideoCompleted,
    VideoOwned,
    first_line,
)
from sal3d.pipeline.store.format import ARRAYS, FORMAT_VERSION, INDEX_ATTRIBUTE, local_or_url, trunk_digest
from sal3d.pipeline.store.index import IndexEdit, entry_edit, index_lock, parse_index, rewrite_index
from sal3d.pipeline.store.ownership import SETTLE_SECONDS, Owner, hold_claim
from sal3d.pipeline.store.reading import StoreReader
from sal3d.pipeline.store.records import VideoRecord, VideoSummary
from sal3d.pipeline.store.storage import delete_folder, delete_key, store_listing
from sal3d.pipeline.store.writing import VideoWriter


class FeatureStore(StoreReader):
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
        self.trunk_digest = trunk_digest(attrs["trunk"])
        self.is_local = isinstance(self.root.store, zarr.storage.LocalStore)
        self.settle_seconds = SETTLE_SECONDS["local" if self.is_local else "remote"]
        super().__init__()
        rebuilt = self._open_videos_group()
        self.index = parse_index(self.videos_group.attrs.get(INDEX_ATTRIBUTE))
        if self.writable and (self.upgraded_from or self.index is None):
            with self.writing("write the store index"):
                self._rebuild_index()
                if self.upgraded_from:
                    self.root.attrs["format_version"] = FORMAT_VERSION
            if self.upgraded_from == 2:
                say(f"{self.location}: store format 2 upgraded to {FORMAT_VERSION} (its index written: "
                    f"{len(self.index)} complete videos; no video redone)")
        if rebuilt:
            say(f"{self.location}: {rebuilt}: rewritten, and its index rebuilt from the videos' own records "
                f"({len(self.index)} complete videos)")

    def _open_videos_group(self) -> str | None:
        """Open the ``videos`` group (it holds the index). Its metadata (``videos/zarr.json``) cannot be
        read: a reader refuses, saying how to repair it; a writer rewrites it with no index (the videos
        below are untouched; the index is then rebuilt from their records) and returns what was wrong
        (None when nothing was)."""
        try:
            self.videos_group = self.root.require_group("videos") if self.writable else self.root["videos"]
            return None
        except Exception as error:  # noqa: BLE001 (zarr reports a damaged zarr.json in several ways)
            problem = (f"its `videos` group metadata (videos/zarr.json, which holds the store index) cannot be "
                       f"read ({type(error).__name__}: {first_line(error)})")
        if not self.writable:
            raise UnreadableIndex(f"{self.location}: {problem}; `sal3d verify {self.location} --repair` "
                                  "rebuilds it from the videos' own records") from None
        with self.writing(f"repair it: {problem}"):
            delete_key(self.root.store, "videos/zarr.json")
            self.videos_group = self.root.create_group("videos")
        return problem

    @contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Around a write to the store: an OSError (a full disk, a read-only store) becomes a
        `StoreWriteError` saying `what` could not be done, in one line (the outermost `what` of nested
        writes: what the caller asked). A missing file is not turned (a group removed meanwhile: the
        callers say what that means)."""
        try:
            yield
        except StoreWriteError as error:
            raise StoreWriteError(self.location, what, error.error) from None
        except FileNotFoundError:
            raise
        except OSError as error:
            raise StoreWriteError(self.location, what, error) from None

    # ------------------------------------------------------------------ state for extract and verify

    def state(self, video_id: str) -> tuple[str, VideoRecord | None, str]:
        """(state, record, why) of a video as a writer sees it. state: ``absent``; ``foreign`` (a folder
        sal3d did not write: `NotAVideo`; never changed); ``unreadable`` (its metadata cannot be read);
        ``owned`` (incomplete, its writer alive); ``incomplete`` (abandoned: free to redo); ``damaged``
        (complete, but the chunks do not match the record); ``complete``. `why` says it in words. On a
        writable store the video's index entry is made to agree with its record on the way (so a rerun
        of extract repairs a stale index)."""
        try:
            group = self.read_video_group(video_id)
            record = self._record_of(video_id, group)
        except FileNotFoundError:
            self._sync_index(video_id, None)
            if not store_listing(self.root.store, self.video_group_path(video_id)):
                return "absent", None, ""
            return "foreign", None, self.not_a_video(video_id) or ""
        except StoreError as error:
            self._sync_index(video_id, None)
            foreign = str(error) if isinstance(error, NotAVideo) else self.not_a_video(video_id)
            return ("foreign", None, foreign) if foreign else ("unreadable", None, str(error))
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

    def discard(self, video_id: str) -> None:
        """Remove whatever a video holds, readable or not: its arrays first, its group metadata last (so
        that a removal cut short still leaves a folder sal3d recognises as its own). A folder sal3d did
        not write (`not_a_video`) is refused with `NotAVideo`, never removed."""
        foreign = self.not_a_video(video_id)
        if foreign:
            raise NotAVideo(foreign)
        self._forget(video_id)
        with self.writing(f"remove video {video_id}"):
            self.set_index_entry(video_id, None)
            for name in ARRAYS:
                delete_folder(self.root.store, f"{self.video_group_path(video_id)}/{name}")
            delete_folder(self.root.store, self.video_group_path(video_id))

    def mark_incomplete(self, video_id: str, why: str) -> None:
        """Flag a complete video as incomplete (damaged: the next extract redoes it); a group whose
        metadata cannot be read is discarded instead. StoreWriteError when the store refuses the write
        (a full disk, a read-only store: it then says so)."""
        self._forget(video_id)
        try:
            attrs = self.read_video_attrs(video_id)
        except StoreError:
            self.discard(video_id)
            return
        attrs.update(complete=False, owner=None, damage=why)
        with self.writing(f"mark damaged video {video_id} incomplete"):
            self.set_index_entry(video_id, None)  # out of the index before its record says so: never the reverse
            self.write_video_attrs(video_id, attrs)

    def write_video_attrs(self, video_id: str, attrs: dict) -> None:
        """Replace a video group's attributes by `attrs` (a `VideoRecord`'s fields), in one write."""
        group = zarr.open_group(self.root.store, path=self.video_group_path(video_id), mode="r+", zarr_format=3)
        with self.writing(f"write the record of video {video_id}"):
            group.attrs.put(attrs)

    def video_group_for_writing(self, video_id: str) -> zarr.Group:
        """A video's existing group, opened to create or replace its arrays."""
        return zarr.open_group(self.root.store, path=self.video_group_path(video_id), mode="r+")

    # ------------------------------------------------------------------ the index

    def _sync_index(self, video_id: str, record: VideoRecord | None) -> None:
        """On a writable store, make the video's index entry agree with its record (None: no group). A
        write the store refuses leaves the entry as it was (the index is a guide; the repair that needs
        the write says so)."""
        if not self.writable:
            return
        wanted = VideoSummary.of(record) if self._indexable(record) else None
        if wanted != (self.index or {}).get(video_id):
            try:
                self.set_index_entry(video_id, wanted)
            except StoreWriteError:
                pass

    def _indexable(self, record: VideoRecord | None) -> bool:
        """Whether a video with this record belongs in the index: complete, made by this store's trunk."""
        return record is not None and record.finished and record.trunk == self.trunk_digest

    def set_index_entry(self, video_id: str, summary: VideoSummary | None) -> None:
        """Set one video's index entry (None: remove it) by rewriting the `videos` group's attributes:
        read now, changed, written back, under `index_lock` (one writer at a time across processes
        on a local store; see `pipeline.store.index` for other stores). A video enters the index only
        once its record says complete, and leaves it before its record changes."""
        self._rewrite_index(entry_edit(video_id, summary))

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

    def _rewrite_index(self, edit: IndexEdit) -> None:
        """Under `index_lock`, read the index as stored now, and write back ``edit(entries)`` (None:
        leave it as it is); this object's `index` becomes what is stored."""
        if not self.writable:
            raise StoreError(f"{self.location}: opened for reading, its index cannot change")
        folder = Path(self.root.store.root) / self.videos_group.path if self.is_local else None
        with self.writing("rewrite the store index (videos/zarr.json)"), index_lock(folder):
            group = zarr.open_group(self.root.store, path=self.videos_group.path, mode="r+", zarr_format=3)
            self.index = parse_index(rewrite_index(group, edit))

    def begin_video(self, video_id: str, frame_count: int, with_maps: bool, attrs: dict | VideoRecord,
                    owner: Owner | None = None) -> VideoWriter:
        """Claim a video and return its writer; its old content (if any) is replaced once the claim
        holds (see `pipeline.store.ownership`). `attrs` is a `VideoRecord` or a dict of its fields;
        `owner` defaults to a fresh claim of this process. Raises `VideoOwned` when another live
        writer holds the video, or completed the same extraction meanwhile."""
        base = attrs if isinstance(attrs, VideoRecord) else VideoRecord.from_attrs(
            {**attrs, "frame_count": frame_count}, f"{self.location}: video {video_id}")
        record = replace(base.fresh(), frame_count=frame_count, has_maps=bool(with_maps), trunk=self.trunk_digest)
        state, old, why = self.state(video_id)
        if state == "foreign":
            raise NotAVideo(f"{why}: move it out of the store's videos/ folder to extract this video")
        if state == "owned":
            raise VideoOwned(f"{self.location}: video {video_id}: {why}")
        if state == "complete" and record.origin is not None and old.origin == record.origin:
            raise VideoCompleted(f"{self.location}: video {video_id}: completed by another run meanwhile")
        owner = owner or Owner.here()
        if video_id in (self.index or {}):  # out of the index before its old content goes
            self.set_index_entry(video_id, None)
        claim = replace(record, owner=asdict(owner)).to_attrs()
        if state in ("absent", "unreadable"):
            if state == "unreadable":
                self.discard(video_id)
            with self.writing(f"begin video {video_id}"):
                self.videos_group.create_group(video_id, attributes=claim, overwrite=True)
        else:
            self.write_video_attrs(video_id, claim)
        self._forget(video_id)
        hold_claim(owner.token)
        return VideoWriter(self, video_id, record, owner)
