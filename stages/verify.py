"""`sal3d verify`: check that every complete video of a feature store holds what its writer wrote.

For each complete video: its chunk listing against its integrity record (every chunk present, of the
size written: what readers check when they open a video), then every chunk read (Zarr checks its
CRC-32C before decompressing) and the CRC-32C of its data compared with the one its writer recorded
(catching a valid chunk of another video or an older run). ``quick`` stops after the listing.

With ``repair``, a damaged video is marked incomplete and a group whose metadata cannot be read is
discarded, so the next `sal3d extract` redoes both; extract does the same (listing check only) for
the videos it visits. Incomplete videos are counted, with who is writing them, and left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sal3d.pipeline.progress import Progress, say
from sal3d.pipeline.store import CHUNK_FRAMES, DamagedVideo, FeatureStore, StoreError


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
        if self.repaired:
            text += f"; {len(self.repaired)} marked incomplete or discarded: the next sal3d extract redoes them"
        elif self.unrepaired:
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


def verify(config: VerifyConfig) -> VerifySummary:
    """Check the store as configured; returns what was found (and repaired)."""
    store = FeatureStore(config.store, mode="r")  # refuses what is not a store of this format first
    if config.repair:
        store = FeatureStore(config.store, mode="a")
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
        elif state in ("damaged", "unreadable"):
            (summary.damaged if state == "damaged" else summary.unreadable)[video_id] = why
            say(f"\nverify: {why}")
            if config.repair:
                store.mark_incomplete(video_id, why)  # an unreadable group is discarded
                summary.repaired.append(video_id)
        progress.update(1, note=video_id)
    progress.close()
    summary.seconds = time.perf_counter() - start
    say(summary.line(config.quick))
    return summary
