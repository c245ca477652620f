"""Stage one's decode side: a work list of videos turned into a stream of messages (begin, batches of
224x224 frames and maps, end or error) by DataLoader worker processes, and the default process counts
of stage one's decode and store-write sides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info

from sal3d.pipeline.datasets import VideoEntry
from sal3d.pipeline.device import usable_cpus
from sal3d.pipeline.frames import FrameReader, FrameReadError, VideoInfo, read_maps
from sal3d.pipeline.preprocessing import TORCHVISION, Preprocessing
from sal3d.pipeline.store import VideoRecord


@dataclass
class Decoded:
    """One message from a decode worker, about the video at `index` of the work list.

    kind ``begin``: `info` holds "frame_count" (after trimming), "record" (the video's `VideoRecord`
    as attributes), "notes" (lines for the user) and "short" ((frames decoded, frames expected) of a
    truncated source, else None);
    ``frames``: `frames` uint8 (n, 224, 224, 3) and `maps` uint8 (n, 224, 224) or None from `start`;
    ``end``: every frame was sent; ``error``: `message` says why the video failed.
    """

    index: int
    kind: str
    start: int = 0
    frames: object = None
    maps: object = None
    info: dict | None = None
    message: str = ""


class DecodeStream(IterableDataset):
    """Decodes the work list in worker processes; worker k takes videos k, k + W, k + 2W, ...

    origins: the `pipeline.identity` origin of each entry (recorded with the video), or None.
    strict: a source shorter than its container declares is an error instead of a note.
    preprocessing: the trunk preset's, which says how frames are resized (`FrameReader`)."""

    def __init__(self, entries: list[VideoEntry], root: Path, batch_size: int, max_frames: int | None,
                 origins: list[dict | None] | None = None, strict: bool = False,
                 preprocessing: Preprocessing = TORCHVISION):
        self.entries, self.root, self.batch_size, self.max_frames = entries, root, batch_size, max_frames
        self.preprocessing = preprocessing
        self.origins = origins or [None] * len(entries)
        self.strict = strict

    def __iter__(self):
        worker = get_worker_info()
        first, step = (worker.id, worker.num_workers) if worker else (0, 1)
        for index in range(first, len(self.entries), step):
            yield from self.decode_video(index)

    def decode_video(self, index: int):
        """The messages of one video of the work list: begin, frames..., end (or error)."""
        entry = self.entries[index]
        try:
            reader = FrameReader(entry, self.preprocessing)  # opened here, inside the worker: never across a fork
            info = reader.info()
            count = info.frame_count if self.max_frames is None else min(info.frame_count, self.max_frames)
            map_files, notes = entry.map_files(), []
            if map_files and len(map_files) != info.frame_count:
                notes.append(f"{info.frame_count} frames but {len(map_files)} maps: keeping the "
                             f"{min(count, len(map_files))} frames that have both")
                count = min(count, len(map_files))
            short = None
            if info.expected_frames is not None:
                short = (info.frame_count, info.expected_frames)
                problem = short_video(info)
                if self.strict:
                    raise FrameReadError(f"{entry.source}: {problem} (--strict)")
                notes.append(problem)
            record = VideoRecord(
                frame_count=count, height=info.height, width=info.width, fps=info.fps,
                source=str(entry.source.relative_to(self.root)), split=entry.split,
                source_frame_count=info.frame_count, expected_frames=info.expected_frames,
                has_maps=bool(map_files), has_fixations=bool(entry.fixation_files()),
                frame_names=entry.frame_names(count), origin=self.origins[index])
            yield Decoded(index, "begin", info={"frame_count": count, "record": record.to_attrs(), "notes": notes,
                                                "short": short})
            for start in range(0, count, self.batch_size):
                stop = min(start + self.batch_size, count)
                frames = reader.read(start, stop)
                maps = read_maps(map_files[start:stop]) if map_files else None
                yield Decoded(index, "frames", start, torch.from_numpy(frames),
                              None if maps is None else torch.from_numpy(maps))
            yield Decoded(index, "end")
        except FrameReadError as error:
            yield Decoded(index, "error", message=str(error))
        except Exception as error:  # anything else about this one video must not stop the dataset
            yield Decoded(index, "error", message=f"{entry.source}: {type(error).__name__}: {error}")


def as_is(message):
    """The DataLoader's collate function for DecodeStream: messages are passed on as they are."""
    return message


def video_arguments(video_id: str, info: dict) -> tuple:
    """`FeatureStore.begin_video`'s arguments for a video, from a decoder's ``begin`` message info."""
    return video_id, info["frame_count"], info["record"]["has_maps"], info["record"]


def short_video(info: VideoInfo) -> str:
    """A truncated source in words: frames decoded, frames expected, and the durations they come from."""
    return (f"truncated? {info.frame_count} frames decoded, about {info.expected_frames} expected (the "
            f"container declares {info.declared_seconds:.2f} s, the frames end at {info.decoded_seconds:.2f} s)")


GPU_DECODE_WORKERS = 8  # at most, with a GPU
GPU_WRITERS = 4  # at most, with a GPU
DEFAULT_WORKERS_TEXT = f"1 on CPU, up to {GPU_DECODE_WORKERS} with a GPU (CPUs - 1)"
DEFAULT_WRITERS_TEXT = f"1 on CPU, up to {GPU_WRITERS} with a GPU (CPUs / 4)"


def default_workers(device: torch.device) -> int:
    """Decode processes: 1 on the CPU (the trunk needs the cores), up to GPU_DECODE_WORKERS with a GPU."""
    cpus = usable_cpus()
    return max(1, min(GPU_DECODE_WORKERS, cpus - 1)) if device.type == "cuda" else 1


def default_writers(device: torch.device) -> int:
    """Store writer processes: 1 on the CPU (one writes far faster than the CPU trunk computes), up to
    GPU_WRITERS with a GPU, where a fast trunk needs several cores of compression (benchmarks/README.md)."""
    cpus = usable_cpus()
    return max(1, min(GPU_WRITERS, cpus // 4)) if device.type == "cuda" else 1
