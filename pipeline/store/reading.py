"""The reading half of `FeatureStore`: its complete videos, their records, and their arrays once
checked against the record.

Listing is one read of the index (`pipeline.store.index`) checked against one listing of the store;
every read of a video's record goes through `StoreReader.read_video_group`; a video's arrays are
handed out only after `check_video` (`pipeline.store.integrity`) has passed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import zarr

from sal3d.pipeline.progress import say
from sal3d.pipeline.store.errors import DamagedVideo, NotAVideo, StoreError, first_line, redo_hint
from sal3d.pipeline.store.format import ARRAYS, INDEX_ATTRIBUTE
from sal3d.pipeline.store.index import parse_index
from sal3d.pipeline.store.integrity import VideoArray, checked_array, chunk_sizes
from sal3d.pipeline.store.records import VideoRecord, VideoSummary
from sal3d.pipeline.store.storage import store_listing

# Videos checked at once on a remote store (`FeatureStore.check_videos`): a check is 3 requests in a
# row (the group's metadata, then each array's chunk listing), so its latency, not its work, is the
# cost; 1,000 videos at 30 ms a request took 2.0 s in 64 threads (benchmarks/store_open.py).
CHECK_THREADS = 64


class StoreReader:
    """The reading methods of `FeatureStore`, which opens the store and sets the attributes below
    (`FeatureStore.__init__`); this class's own constructor sets up what it remembers of the videos
    it has checked."""

    location: str  # as Zarr opens it (`local_or_url`)
    root: zarr.Group  # the store's root group
    videos_group: zarr.Group  # its ``videos`` group
    index: dict[str, VideoSummary] | None  # the store index as last read or written (None: none)
    format_version: int
    trunk_digest: str  # `trunk_digest` of the store's trunk fingerprint
    is_local: bool  # a local folder (Zarr's LocalStore), not an fsspec URL

    def __init__(self):
        self._checked: dict[str, VideoRecord] = {}
        self._groups: dict[str, zarr.Group] = {}  # groups of checked videos, metadata read once
        self._opened: dict[tuple[str, str], VideoArray] = {}  # arrays of checked videos
        self._unreadable: set[str] = set()  # groups whose unreadable metadata was said
        self._said_no_index = False

    @property
    def fingerprint(self) -> dict:
        return dict(self.root.attrs["trunk"])

    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    def video_group_path(self, video_id: str) -> str:
        """The path of a video's group inside the store (``videos/<video id>``), present or not."""
        return f"{self.videos_group.path}/{video_id}"

    def listed_ids(self) -> list[str]:
        """Ids of every video group in the store, complete or not, sorted: one listing of the store."""
        listing = store_listing(self.root.store, self.videos_group.path) or {}
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
                        say(f"note: {error}" if isinstance(error, NotAVideo) else
                            f"note: {error}; counted as incomplete (sal3d extract redoes it)")
                    continue
                if not record.finished:
                    continue
                summary = VideoSummary.of(record)
            found[video_id] = summary
        return found

    def video_ids(self, complete_only: bool = True) -> list[str]:
        """Ids of the videos in the store, sorted; by default only complete ones (`complete_videos`)."""
        return list(self.complete_videos()) if complete_only else self.listed_ids()

    def read_video_group(self, video_id: str) -> zarr.Group:
        """A video's group, its metadata (the record) read from the store now, never a cached copy:
        every read of a video's record goes through here. FileNotFoundError when the video has no
        group metadata; StoreError (naming the video) when it cannot be read."""
        try:
            return zarr.open_group(self.root.store, path=self.video_group_path(video_id), mode="r", zarr_format=3)
        except FileNotFoundError:
            raise
        except zarr.errors.ContainsArrayError:
            raise NotAVideo(f"{self.location}: videos/{video_id} is not a sal3d video (a Zarr array, not a group): "
                            "left as is") from None
        except Exception as error:
            raise StoreError(f"{self.location}: video {video_id}: metadata cannot be read "
                             f"({type(error).__name__}: {first_line(error)})") from None

    def read_video_attrs(self, video_id: str) -> dict:
        """A video group's attributes, read from the store now (never a cached copy); raises as
        `read_video_group`."""
        return dict(self.read_video_group(video_id).attrs)

    def _record_of(self, video_id: str, group: zarr.Group) -> VideoRecord:
        attrs = dict(group.attrs)
        if not {"frame_count", "complete", "owner"} & set(attrs):  # every record sal3d writes has all three
            raise NotAVideo(f"{self.location}: videos/{video_id} is not a sal3d video (a Zarr group without a "
                            "sal3d record): left as is")
        return VideoRecord.from_attrs(attrs, f"{self.location}: video {video_id}")

    def not_a_video(self, video_id: str) -> str | None:
        """Why the folder ``videos/<video id>`` is not one sal3d wrote, judged by its names alone (one
        listing): it has no group metadata (``zarr.json``), or holds a name other than ``zarr.json`` and
        the arrays (hidden temporary files aside). None when it may be sal3d's, or is absent."""
        listing = store_listing(self.root.store, self.video_group_path(video_id))
        if not listing:
            return None
        names = {name for name in listing if not name.startswith(".")}
        where = f"{self.location}: videos/{video_id} is not a sal3d video"
        if "zarr.json" not in names:
            return f"{where} (no zarr.json: a folder sal3d did not write): left as is"
        others = sorted(names - {"zarr.json", *ARRAYS})
        if others:
            return f"{where} (it holds {others[0]!r}, which sal3d never writes there): left as is"
        return None

    def video_record(self, video_id: str) -> VideoRecord:
        """The video's `VideoRecord`; StoreError when the group is absent or its metadata unreadable."""
        try:
            group = self.read_video_group(video_id)
        except FileNotFoundError:
            foreign = self.not_a_video(video_id)
            raise (NotAVideo(foreign) if foreign else StoreError(f"{self.location}: no video {video_id}")) from None
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
            group = self.read_video_group(video_id)
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
        self._trust_record(video_id, record)
        check_chunks(self, video_id, record)
        self._checked[video_id], self._groups[video_id] = record, group
        return record

    def _trust_record(self, video_id: str, record: VideoRecord) -> None:
        """Where the index entry of a video and its record disagree on what plans use (frames, maps,
        split), the record is the truth. If the index stored now agrees with the record, the video was
        rewritten after this store was opened: StoreError (a plan made from the old entry must not read
        the new data). Otherwise the entry is wrong: said once, and replaced in memory by the record's."""
        indexed = (self.index or {}).get(video_id)
        truth = VideoSummary.of(record)
        if indexed is None or planned_facts(indexed) == planned_facts(truth):
            return
        said, records = (", ".join(v for v, w in zip(planned_facts(a), planned_facts(b)) if v != w)
                         for a, b in ((indexed, truth), (truth, indexed)))
        stored = zarr.open_group(self.root.store, path=self.videos_group.path, mode="r", zarr_format=3).attrs
        now = (parse_index(stored.get(INDEX_ATTRIBUTE)) or {}).get(video_id)
        if now is not None and planned_facts(now) == planned_facts(truth):
            raise StoreError(f"{self.location}: video {video_id} was rewritten after this store was opened (the "
                             f"index said {said}, its record says {records}): start again")
        say(f"note: {self.location}: the store index says video {video_id} has {said}, its record {records}: "
            f"using the record (the index is only a guide); `sal3d verify {self.location} --quick --repair` "
            "rewrites the index")
        self.index = {**(self.index or {}), video_id: truth}

    def _array(self, video_id: str, name: str) -> VideoArray | None:
        record = self.check_video(video_id)
        if name not in record.arrays:
            return None
        if (video_id, name) not in self._opened:
            self._opened[video_id, name] = VideoArray(self.location, video_id, name, checked_array(
                self.location, video_id, record, self._groups[video_id], name), record.integrity[name]["crc32c"])
        return self._opened[video_id, name]

    def features(self, video_id: str) -> VideoArray:
        """float16 (T, 512, 14, 14) of a complete video, checked against its record (`check_video`);
        every chunk read is compared with its recorded data CRC-32C (`VideoArray`)."""
        return self._array(video_id, "features")

    def maps(self, video_id: str) -> VideoArray | None:
        """uint8 (T, 224, 224) ground-truth maps of a complete video, or None when it has none."""
        return self._array(video_id, "maps")

    def _forget(self, video_id: str) -> None:
        """Drop what this object knows of a video (its check, its open arrays): it is being changed."""
        self._checked.pop(video_id, None)
        self._groups.pop(video_id, None)
        self._opened.pop((video_id, "features"), None)
        self._opened.pop((video_id, "maps"), None)

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


def planned_facts(summary: VideoSummary) -> tuple[str, str, str]:
    """What plans take from a video's summary (its frames, whether it has maps, its split), in words."""
    return (f"{summary.frame_count} frames", "maps" if summary.has_maps else "no maps", f"split {summary.split}")


def check_chunks(store: StoreReader, video_id: str, record: VideoRecord) -> None:
    """Check a complete video's chunk listings against its record: DamagedVideo naming the array and
    the chunk when there is no integrity record, another trunk made it, or a chunk is missing, of
    another size than was written, or beyond the video's frames. One listing per array."""
    def damaged(problem, array=None, chunk=None):
        return DamagedVideo(store.location, video_id, problem, array, chunk, record.frame_count)

    if record.integrity is None:
        raise damaged("marked complete without an integrity record (set by hand, or by an older sal3d)")
    if record.trunk != store.trunk_digest:
        raise damaged(f"made with trunk {record.trunk}, the store's is {store.trunk_digest} "
                      "(a group copied from another store?)")
    for name in record.arrays:
        expected = record.integrity.get(name, {})
        sizes = expected.get("sizes", [])
        if len(sizes) != record.chunk_count or len(expected.get("crc32c", [])) != record.chunk_count:
            raise damaged(f"the integrity record lists {len(sizes)} chunks, the array has "
                          f"{record.chunk_count}", name)
        # the chunk listing alone: the array's own metadata is checked when it is opened (`checked_array`),
        # which keeps this check at 3 requests a video (train-decoder checks every video up front)
        found = chunk_sizes(store.root.store, f"{store.video_group_path(video_id)}/{name}", 1 + len(ARRAYS[name][0]))
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
