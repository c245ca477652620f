"""What a stored video was extracted from, so that a rerun skips only the very same extraction.

The origin of a video (recorded in its `pipeline.store.VideoRecord`) is::

    {"source": "video/001.AVI",                        the source, relative to the dataset
     "content": {"size": 3651642, "sample": "9f2c..."},  its size and a digest of its first and last
                                                         SAMPLE_BYTES (frame folders: of every
                                                         frame's name and size, and the first and
                                                         last frame's samples)
     "maps": {...} or None,                              the same of its ground-truth map files
     "max_frames": 8 or None,                            --max-frames as asked
     "pairing": "frame number"}                          how maps were paired with frames (absent in
                                                         records of an older sal3d, which paired the
                                                         n-th map with the n-th frame)

Modification times are not part of it: a dataset copied to another disk keeps its features. A file
rewritten in place with the same size, the same first and last 64 KiB and the same name is taken for
the same (cost: two 64 KiB reads and one stat per video and per map file, at every extract run).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sal3d.pipeline.datasets import VideoEntry
from sal3d.pipeline.decode import check_frame_names, source_frame_numbers
from sal3d.pipeline.pairing import PairingError, frame_number

SAMPLE_BYTES = 64 * 1024
PAIRING = "frame number"  # maps are paired with frames by the frame number in their names


def file_sha256(path: Path | str) -> str:
    """The SHA-256 of a whole file (a checkpoint, a Keras file), hex; read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _sample(path: Path, size: int, digest) -> None:
    with open(path, "rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if size > 2 * SAMPLE_BYTES:
            handle.seek(size - SAMPLE_BYTES)
        digest.update(handle.read(SAMPLE_BYTES))


def file_content(path: Path) -> dict:
    """{"size", "sample"} of one file (see the module docstring)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    _sample(path, size, digest)
    return {"size": size, "sample": digest.hexdigest()[:16]}


def files_content(files: list[Path]) -> dict:
    """{"files", "size", "sample"} of an ordered list of files (a frame or map folder)."""
    digest = hashlib.sha256()
    total = 0
    for path in files:
        size = path.stat().st_size
        total += size
        digest.update(f"{path.name}\0{size}\0".encode())
    for path in (files[:1] + files[-1:]) if files else []:
        _sample(path, path.stat().st_size, digest)
    return {"files": len(files), "size": total, "sample": digest.hexdigest()[:16]}


def origin_of(entry: VideoEntry, root: Path, max_frames: int | None) -> dict:
    """The origin a run would record for `entry` of the dataset at `root` (OSError if unreadable)."""
    maps = entry.map_files()
    return {
        "source": str(Path(entry.source).relative_to(root)),
        "content": file_content(entry.source) if entry.is_video_file else files_content(list(entry.frames)),
        "maps": files_content(maps) if maps else None,
        "max_frames": max_frames,
        "pairing": PAIRING,
    }


def _frames_kept(max_frames: int | None, frame_count: int, source_frames: int | None) -> int | None:
    """The frames an extraction with `max_frames` stores of a source with `source_frames` (None: unknown)."""
    if source_frames is None:
        return None
    return source_frames if max_frames is None else min(source_frames, max_frames)


def origin_change(stored: dict | None, wanted: dict, frame_count: int, source_frames: int | None) -> str | None:
    """None when a video extracted from `stored` (holding `frame_count` of `source_frames` frames) is
    what extracting `wanted` would give; else why not, in words."""
    if stored is None:
        return "it has no record of its source (made by an older sal3d)"
    if stored.get("source") != wanted["source"]:
        return f"it was extracted from {stored.get('source')}, the dataset's video is now {wanted['source']}"
    if stored.get("content") != wanted["content"]:
        old, new = stored.get("content") or {}, wanted["content"]
        sizes = f" ({old.get('size')} bytes then, {new['size']} now)" if old.get("size") != new["size"] else ""
        return f"its source {wanted['source']} has changed{sizes}: another dataset, or a new copy"
    if stored.get("maps") != wanted["maps"]:
        return "its ground-truth maps have changed" if wanted["maps"] else "its ground-truth maps are gone"
    if stored.get("max_frames") != wanted["max_frames"]:
        then = _frames_kept(stored.get("max_frames"), frame_count, source_frames)
        now = _frames_kept(wanted["max_frames"], frame_count, source_frames)
        if then is None or then != now:
            asked = f"--max-frames {wanted['max_frames']}" if wanted["max_frames"] else "all frames"
            held = (f"it holds {frame_count} frames (extracted with --max-frames {stored.get('max_frames')})"
                    if stored.get("max_frames") else f"it holds all {frame_count} frames")
            return f"{held}; this run asks for {asked}"
    return None


def pairing_change(stored: dict | None, entry: VideoEntry, frame_count: int) -> str | None:
    """None when the maps of a stored video of `frame_count` frames, extracted from `entry` with the
    origin `stored`, are paired with its frames as this sal3d pairs them; else why not, in words.
    An older sal3d (no "pairing" in its origin) gave the n-th stored frame the n-th map file: that
    holds only where each of those maps carries its frame's number. A frame folder whose files
    clash (`pipeline.decode.check_frame_names`) is never right: redone, it fails, named."""
    if stored is None or stored.get("pairing") == PAIRING:
        return None
    try:
        if not entry.is_video_file:
            check_frame_names(entry)
        maps = entry.map_files()
        if not maps:
            return None
        numbers = source_frame_numbers(entry, len(entry.frames) if entry.frames else frame_count)[:frame_count]
    except PairingError as error:
        return str(error)
    if len(maps) >= frame_count and [frame_number(path) for path in maps[:frame_count]] == numbers:
        return None
    return "its maps were paired with its frames by position (an older sal3d), not by frame number"
