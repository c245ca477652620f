"""What a store says about a video: its record (the video group's attributes) and its index entry."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone

from sal3d.pipeline.store.errors import StoreError
from sal3d.pipeline.store.format import CHUNK_FRAMES


def now_iso() -> str:
    """The time now as records hold it: ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    frames_without_maps: 0-based indices of the stored frames that have no ground-truth map (their
    stored map is all zero: window context, never a target); None when every frame has one, or the
    video has no maps. trunk_dtype: the dtype the trunk computed its features in (``float32``,
    ``bfloat16``: `pipeline.device.compute_dtype`); None in stores made before it was recorded.
    origin: what was extracted ({"source", "content", "maps", "max_frames", "pairing"}: see
    `pipeline.identity`), to skip only the same thing on a rerun. complete: the writer finished it.
    owner: the writer's claim (`Owner`). integrity: per array, {"sizes": stored bytes per chunk,
    "crc32c": CRC-32C of each chunk's data}, written with ``complete = true``. damage: why a
    complete video was marked incomplete (verify --repair, extract).
    """

    frame_names: list[str] | None = None
    frames_without_maps: list[int] | None = None
    trunk_dtype: str | None = None
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

