"""`sal3d verify`: check that every complete video of a feature store holds what its writer wrote.

For each complete video: its chunk listing against its integrity record (every chunk present, of the
size written: what readers check when they open a video), then every chunk read (Zarr checks its
CRC-32C before decompressing) and the CRC-32C of its data compared with the one its writer recorded
(catching a valid chunk of another position, video or run), as every reader does. ``quick`` stops
after the listing.

What ``repair`` changes, and nothing else:
- a damaged video (its record readable) is marked incomplete: its record says why, its data stays
  until the next `sal3d extract` redoes it;
- a video group whose metadata (``zarr.json``) cannot be read is removed (its arrays first, then the
  rest), but only when the folder holds nothing but what sal3d writes there (``zarr.json``,
  ``features``, ``maps``, hidden temporary files);
- the store index (the ``videos`` group's attribute) is made to agree with the records, and a
  ``videos/zarr.json`` that cannot be read is rewritten, its index rebuilt from the records.
A folder in ``videos/`` that sal3d did not write (no ``zarr.json``, a Zarr array, a group without a
sal3d record, other files) is reported and left as is, as are incomplete videos (counted, with who is
writing them). A write the store refuses (a full disk, a read-only store) is said per video, and the
video is counted as not repaired. extract repairs the same way (listing check only) the videos it
visits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sal3d.pipeline.progress import Progress, say
from sal3d.pipeline.store import (
    CHUNK_FRAMES,
    DamagedVideo,
    FeatureStore,
    StoreError,
    StoreWriteError,
    UnreadableIndex,
)


@dataclass
class VerifyConfig:
    """Everything `sal3d verify` was asked; see its --help."""

    store: str
    repair: bool = False
    quick: bool = False
    videos: list[str] | None = None


@dataclass
class VerifySummary:
    checked: list[str] = field(default_factory=list)  # complete videos found whole
    damaged: dict[str, str] = field(default_factory=dict)  # video id -> what is wrong
    unreadable: dict[str, str] = field(default_factory=dict)  # video id -> why its metadata cannot be read
    incomplete: dict[str, str] = field(default_factory=dict)  # video id -> its state, in words
    repaired: list[str] = field(default_factory=list)  # marked incomplete or discarded by this run
    foreign: dict[str, str] = field(default_factory=dict)  # folder -> why it is not a sal3d video (left as is)
    refused: dict[str, str] = field(default_factory=dict)  # video id -> the write the store refused (not repaired)
    frames: int = 0  # frames read (full check)
    seconds: float = 0.0

    @property
    def unrepaired(self) -> list[str]:
        return [v for v in [*self.damaged, *self.unreadable] if v not in self.repaired]

    def line(self, quick: bool) -> str:
        how = "chunk listings against the records" if quick else f"every chunk read, {self.frames} frames"
        text = (f"verify: {len(self.checked)} complete videos whole, {len(self.damaged)} damaged, "
                f"{len(self.unreadable)} unreadable, {len(self.incomplete)} incomplete ({how}, "
                f"{self.seconds:.1f} s)")
        if self.foreign:
            text += f"; {len(self.foreign)} folder(s) in videos/ not sal3d videos, left as is"
        if self.repaired:
            text += f"; {len(self.repaired)} marked incomplete or discarded: the next sal3d extract redoes them"
        if self.refused:
            text += f"; {len(self.refused)} could not be repaired (the store refused the write: see above)"
        elif self.unrepaired and not self.repaired:
            text += "; pass --repair to have the next sal3d extract redo them"
        return text


def check_data(store: FeatureStore, video_id: str) -> int:
    """Read every chunk of a complete video, each compared with its recorded data CRC-32C as every read
    is (`VideoArray`); returns the frames read, raises DamagedVideo naming the array and the chunk."""
    record = store.check_video(video_id)
    for name in record.arrays:
        array = store.features(video_id) if name == "features" else store.maps(video_id)
        for chunk in range(record.chunk_count):  # one chunk at a time: memory stays flat
            array[chunk * CHUNK_FRAMES:min((chunk + 1) * CHUNK_FRAMES, record.frame_count)]
    return record.frame_count


def repair(store: FeatureStore, video_id: str, why: str, summary: VerifySummary) -> None:
    """Mark a damaged video incomplete, or discard a group whose metadata cannot be read (what
    `FeatureStore.mark_incomplete` does); a write the store refuses is said and counted, not raised."""
    try:
        store.mark_incomplete(video_id, why)
        summary.repaired.append(video_id)
    except StoreWriteError as error:
        summary.refused[video_id] = str(error)
        say(f"verify: not repaired: {error}")


def verify(config: VerifyConfig) -> VerifySummary:
    """Check the store as configured; returns what was found (and repaired)."""
    try:
        store = FeatureStore(config.store, mode="r")  # refuses what is not a store of this format first
    except UnreadableIndex:
        if not config.repair:
            raise
    if config.repair:
        store = FeatureStore(config.store, mode="a")  # rebuilds an unreadable `videos` group
    ids = store.video_ids(complete_only=False)
    if config.videos:
        unknown = [v for v in config.videos if v not in ids]
        if unknown:
            raise StoreError(f"{store.location}: no video {', '.join(unknown)} in the store")
        ids = list(dict.fromkeys(config.videos))
    summary = VerifySummary()
    say(f"verify: {len(ids)} videos in {store.location}" + (" (repairing)" if config.repair else ""))
    progress = Progress("verify", total=len(ids), unit="videos")
    start = time.perf_counter()
    for video_id in ids:
        state, _, why = store.state(video_id)
        if state == "complete" and not config.quick:
            try:
                summary.frames += check_data(store, video_id)
            except DamagedVideo as error:
                state, why = "damaged", error.brief
        if state == "complete":
            summary.checked.append(video_id)
        elif state in ("owned", "incomplete"):
            summary.incomplete[video_id] = why
        elif state == "foreign":
            summary.foreign[video_id] = why
            say(f"\nverify: {why}")
        elif state in ("damaged", "unreadable"):
            (summary.damaged if state == "damaged" else summary.unreadable)[video_id] = why
            say(f"\nverify: {why}")
            if config.repair:
                repair(store, video_id, why, summary)
        progress.update(1, note=video_id)
    progress.close()
    summary.seconds = time.perf_counter() - start
    say(summary.line(config.quick))
    return summary
