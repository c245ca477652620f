"""Stage one's decode side: a work list of videos turned into a stream of messages (begin, batches of
224x224 frames and maps, end or error) by DataLoader worker processes, and the default process counts
of stage one's decode and store-write sides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info

from sal3d.pipeline.datasets import VideoEntry, numeric_key
from sal3d.pipeline.device import usable_cpus
from sal3d.pipeline.frames import FrameReader, FrameReadError, VideoInfo, read_maps
from sal3d.pipeline.pairing import Pairing, PairingError, by_frame_number, number_list, pair, refuse_clashes
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
    strict: a source shorter than its container declares, or with frames without a map (`pair_maps`),
    is an error instead of a note.
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
            check_frame_names(entry)
            maps = pair_maps(entry, info.frame_count, count)
            notes, short = list(maps.notes), None
            if self.strict and maps.refused:
                raise FrameReadError(f"{entry.source}: {maps.refused} (--strict)")
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
                has_maps=bool(maps.files), has_fixations=bool(entry.fixation_files()),
                frame_names=entry.frame_names(count), frames_without_maps=maps.frames_without or None,
                origin=self.origins[index])
            yield Decoded(index, "begin", info={"frame_count": count, "record": record.to_attrs(), "notes": notes,
                                                "short": short})
            for start in range(0, count, self.batch_size):
                stop = min(start + self.batch_size, count)
                frames = reader.read(start, stop)
                targets = read_maps(maps.files[start:stop]) if maps.files else None
                yield Decoded(index, "frames", start, torch.from_numpy(frames),
                              None if targets is None else torch.from_numpy(targets))
            yield Decoded(index, "end")
        except (FrameReadError, PairingError) as error:
            yield Decoded(index, "error", message=str(error))
        except Exception as error:  # anything else about this one video must not stop the dataset
            yield Decoded(index, "error", message=f"{entry.source}: {type(error).__name__}: {error}")


def check_frame_names(entry: VideoEntry) -> None:
    """Refuse a frame folder in which two files would be one frame: PairingError naming them. Two
    files clash when their names, without extension, are equal once each run of digits is read as a
    number (`numeric_key`): ``0002.png`` beside ``0002.jpg``; ``1.png``, ``01.png`` and ``0001.png``;
    ``a.png`` beside ``a.jpg`` in a folder whose names hold no digits (such folders are ordered by name)."""
    same: dict[tuple, list[Path]] = {}
    for path in entry.frames:
        same.setdefault(numeric_key(path.stem), []).append(path)
    refuse_clashes(same.values(), "frames that would be one frame")


def source_frame_numbers(entry: VideoEntry, frame_count: int) -> list[int]:
    """The frame numbers (`pipeline.pairing`) of all `frame_count` frames of `entry`, in frame order,
    by which its ground truth is paired: 1, 2, ... for a video file; the number in each frame's name
    for a frame folder, or 1, 2, ... in name order when no name holds a digit. PairingError names
    the frames of a folder that share a number, or a name without a number among numbered ones."""
    numbers = entry.frame_numbers(frame_count)
    if entry.is_video_file or all(number is None for number in numbers):
        return list(range(1, frame_count + 1))
    by_frame_number(list(entry.frames), "frames")  # refuses shared numbers and names without one
    return numbers


@dataclass(frozen=True)
class PairedMaps:
    """The ground-truth maps of a video's stored frames, paired by frame number (`pair_maps`).

    files: per stored frame, its map file or None (no map: an all-zero map is stored, never a target);
    empty when the video is stored without maps. frames_without: 0-based indices of the stored frames
    without a map. notes: lines for the user. refused: why ``--strict`` refuses the video, else "".
    """

    files: tuple[Path | None, ...] = ()
    frames_without: list[int] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    refused: str = ""


def pair_maps(entry: VideoEntry, frame_count: int, count: int) -> PairedMaps:
    """Pair the map files of `entry` (a source of `frame_count` frames, of which the first `count` are
    stored) with its frames by frame number. Frames without a map are kept, without a target: their
    neighbours' windows and their own prediction need them. Maps whose number no frame has are
    ignored. Both are named in a note. When map files exist but none pairs with a stored frame, the
    video is stored without maps, and a note says so. PairingError for files that cannot be told apart."""
    map_files = entry.map_files()
    if not map_files:
        return PairedMaps()
    numbers = source_frame_numbers(entry, frame_count)
    numbered = by_frame_number(map_files, "maps")
    whole = pair(numbers, numbered)
    files = whole.files[:count]
    without = [i for i, path in enumerate(files) if path is None]
    if len(without) == count:
        why = (f"none of its {len(map_files)} maps has the number of a stored frame (maps "
               f"{number_list(list(numbered))}; frames {number_list(numbers[:count])})")
        return PairedMaps(notes=(f"{why}: stored without maps",), refused=why)
    stored = Pairing(files, tuple(numbers[i] for i in without), whole.files_without)
    if stored.complete:
        return PairedMaps(files)
    parts = []
    if stored.frames_without:
        parts.append(f"{stored.describe_frames_without('maps')} (kept without a target: window context only, "
                     "never a training target)")
    if stored.files_without:
        parts.append(f"{stored.describe_files_without('maps')} (ignored)")
    note = "ground truth paired by frame number: " + "; ".join(parts)
    return PairedMaps(files, without, (note,), stored.describe_frames_without("maps"))


def as_is(message):
    """The DataLoader's collate function for DecodeStream: messages are passed on as they are."""
    return message


def video_arguments(video_id: str, info: dict, trunk_dtype: torch.dtype) -> tuple:
    """`FeatureStore.begin_video`'s arguments for a video, from a decoder's ``begin`` message info;
    the record names `trunk_dtype`, the dtype the trunk computes the video's features in."""
    record = {**info["record"], "trunk_dtype": str(trunk_dtype).removeprefix("torch.")}
    return video_id, info["frame_count"], record["has_maps"], record


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
