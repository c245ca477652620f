"""The videos every figure runs on: the given dataset's first videos, or generated 640x360 clips."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from sal3d.pipeline.datasets import VideoEntry, discover
from sal3d.pipeline.ffmpeg import ffmpeg_exe
from sal3d.pipeline.frames import FrameReader
from sal3d.pipeline.sample import CLIP_HEIGHT, CLIP_WIDTH, make_clips
from sal3d.pipeline.store import FeatureStore
from sal3d.stages.bench.config import MAX_VIDEOS, BenchError
from sal3d.stages.bench.report import note

#: Frames per generated clip: the clips hold `frames` in as few videos as this allows (at most MAX_VIDEOS).
CLIP_FRAMES_PER_VIDEO = 512


@dataclass(frozen=True)
class BenchData:
    root: Path
    kind: str  # "generated" or "given"
    layout: str
    entries: list[VideoEntry]  # at most MAX_VIDEOS
    per_video: int  # frames asked of each video
    counts: dict[str, int]  # video id -> frames used (per_video, or fewer where a video is shorter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def prepare_data(dataset: Path | None, frames: int, work: Path) -> BenchData:
    """`frames` frames in all from `dataset`, or from clips generated under `work` when it is None."""
    if dataset is None:
        if ffmpeg_exe() is None:
            raise BenchError("generating the benchmark clip needs ffmpeg: pip install imageio-ffmpeg "
                             "(or give a DATASET_DIR)")
        videos = max(1, min(MAX_VIDEOS, math.ceil(frames / CLIP_FRAMES_PER_VIDEO)))
        per_video = math.ceil(frames / videos)
        root = work / "clip"
        start = time.perf_counter()
        make_clips(root, videos, per_video)
        note(f"wrote {videos} clip(s) of {per_video} frames at {CLIP_WIDTH}x{CLIP_HEIGHT} in "
             f"{time.perf_counter() - start:.1f} s")
        kind = "generated"
    else:
        root, kind = Path(dataset), "given"
    layout, entries = discover(root)
    if not entries:
        raise BenchError(f"{root}: no videos found (layout {layout})")
    entries = entries[:MAX_VIDEOS]
    per_video = math.ceil(frames / len(entries))
    counts = {e.video_id: min(per_video, FrameReader(e).info().frame_count) for e in entries}
    return BenchData(root, kind, layout, entries, per_video, counts)


def video_sizes(store: Path) -> list[tuple[int, int]]:
    """The (width, height) of the videos in a feature store, sorted, each once."""
    stored = FeatureStore(str(store))
    return sorted({(summary.width, summary.height) for summary in stored.complete_videos().values()})
