"""Dataset layouts: which videos a dataset directory holds, where their frames and ground truth are.

A layout turns a dataset root into a list of `VideoEntry`, one per video, each knowing its source
(a video file decoded by decord, or a folder of frame images), its ground-truth folders when the
dataset has them, and its official split. Everything here is path logic; nothing is decoded.

Supported layouts (see DESIGN.md section 2):

- ``dhf1k``: ``video/001.AVI`` + ``annotation/0001/{maps,fixation}/0001.png``; split from the manifest.
- ``ucf-sports`` / ``hollywood2``: ``training|testing/<video>/{images,maps,fixation}/*.png``.
- In every layout with ground truth, binary fixations may instead be MATLAB files
  ``fixation/maps/<frame>.mat`` holding the variable ``I``, as the benchmark's ``evaluationFunc.m``
  reads them; when both exist, the ``.mat`` files are used.

Frames, maps and fixations are paired by the frame number in their names (`pipeline.pairing`).
- ``davis``: ``JPEGImages/480p/<sequence>/00000.jpg`` (no ground truth).
- ``videos``: a folder of video files.  ``frames``: a folder of frame folders.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.pairing import frame_number

LAYOUTS = ("dhf1k", "ucf-sports", "hollywood2", "davis", "videos", "frames")
SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FIXATION_MAT_FOLDER = "maps"  # fixation/maps/<frame>.mat, as the benchmark's evaluationFunc.m reads them
# Predictions are laid out as the benchmark's (OUT_DIR/<video>/<frame>.png); overlays live beside them in
# OUT_DIR/overlays/ (<video>/<frame>.png, <video>.mp4), which evaluate and compare skip.
OVERLAY_DIR = "overlays"
# The ACLNet redistribution of UCF-Sports and Hollywood-2 splits by top-level folder.
FOLDER_SPLITS = {"training": "train", "testing": "test"}
# Hollywood-2 has no file: its redistribution's training/ and testing/ folders are the official split.
MANIFEST_FILES = {"dhf1k": "dhf1k.csv", "ucf-sports": "ucf-sports.csv"}


class DatasetError(Sal3dError):
    """A dataset directory, manifest or video selection that cannot be used as asked."""


@dataclass(frozen=True)
class VideoEntry:
    """One video of a dataset.

    video_id: the key in the feature store and the folder name of its predictions
        (DHF1K: the annotation folder name, ``0001``).
    source: a video file, or a folder of frame images when `frames` is set.
    frames: the frame image files in numeric order (frame-folder layouts), else empty.
    maps_dir / fixations_dir: ground-truth folders, or None when the dataset has none for it.
    split: ``train`` / ``val`` / ``test``, or None for layouts without an official split.
    """

    video_id: str
    source: Path
    split: str | None = None
    frames: tuple[Path, ...] = field(default=(), repr=False)
    maps_dir: Path | None = None
    fixations_dir: Path | None = None

    @property
    def is_video_file(self) -> bool:
        return not self.frames

    def map_files(self) -> list[Path]:
        """Continuous ground-truth maps, in numeric frame order (empty when there are none)."""
        return image_files(self.maps_dir) if self.maps_dir else []

    def fixation_files(self) -> list[Path]:
        """Binary fixation maps, in numeric frame order (empty when there are none): the benchmark's
        ``fixation/maps/*.mat`` when there are any, else the images in ``fixation/``."""
        if not self.fixations_dir:
            return []
        return mat_files(self.fixations_dir / FIXATION_MAT_FOLDER) or image_files(self.fixations_dir)

    def frame_numbers(self, count: int) -> list[int]:
        """The frame numbers (`pipeline.pairing.frame_number`) of the first `count` frames, by which
        ground truth is paired: 1, 2, ... for a video file (DHF1K's maps ``0001.png`` are frame 1); the
        number in each frame's own name for a frame folder (None for a name without digits)."""
        if self.frames:
            return [frame_number(p) for p in self.frames[:count]]
        return list(range(1, count + 1))

    def frame_names(self, count: int) -> list[str]:
        """Names (without extension) of the first `count` frames, as benchmarks name prediction PNGs.

        Video files: the 1-based frame number with four digits (DHF1K's ``0001``); frame folders:
        the source frame's own name.
        """
        if self.frames:
            return [p.stem for p in self.frames[:count]]
        return [f"{i + 1:04d}" for i in range(count)]


def numeric_key(path: Path | str) -> tuple:
    """Sort key that orders ``frame_2`` before ``frame_10`` (numbers compared as numbers)."""
    name = Path(path).name
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def image_files(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted numerically; empty when the folder is absent."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                  key=numeric_key)


def mat_files(folder: Path) -> list[Path]:
    """MATLAB ``.mat`` files directly in `folder`, sorted numerically; empty when the folder is absent."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() == ".mat" and p.is_file()), key=numeric_key)


def video_files(folder: Path) -> list[Path]:
    """Video files directly in `folder`, sorted numerically."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()),
                  key=numeric_key)


def inside_root(root: Path, relative: str | Path) -> Path:
    """`root / relative`, refused when it would resolve outside `root` (``..``, absolute, symlinks)."""
    root_resolved = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise DatasetError(f"{root / relative}: resolves to {candidate}, outside the dataset root {root_resolved}")
    return candidate


def _plain_name(name: str) -> bool:
    """A name that is one path component, neither ``.`` nor ``..``: ``root / name`` is inside ``root``."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _check_video_id(video_id: str, origin: str) -> str:
    if not _plain_name(video_id):
        raise DatasetError(f"{origin}: video id {video_id!r} is not a plain name (it would leave the dataset root)")
    return video_id


# --------------------------------------------------------------------------- manifests


def load_manifest(path: Path) -> dict[str, str]:
    """Read a split manifest: a CSV with header ``video,split``. Returns {video id: split}."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    manifest = {}
    for line, row in enumerate(rows, start=2):
        video_id, split = (row.get("video") or "").strip(), (row.get("split") or "").strip()
        _check_video_id(video_id, f"{path}:{line}")
        if split not in SPLITS:
            raise DatasetError(f"{path}:{line}: split {split!r} is not one of {', '.join(SPLITS)}")
        manifest[video_id] = split
    return manifest


def official_manifest(layout: str) -> dict[str, str]:
    """The official split shipped in `data_manifests/` for `layout` (empty when it has none)."""
    name = MANIFEST_FILES.get(layout)
    if name is None:
        return {}
    with resources.as_file(resources.files("sal3d.data_manifests") / name) as path:
        return load_manifest(path)


# --------------------------------------------------------------------------- layouts


def detect_layout(root: Path) -> str:
    """Recognize the layout of a dataset directory, or raise DatasetError saying what was seen."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    if (root / "video").is_dir() and (root / "annotation").is_dir():
        return "dhf1k"
    if (root / "JPEGImages").is_dir():
        return "davis"
    split_dirs = [root / name for name in FOLDER_SPLITS if (root / name).is_dir()]
    if split_dirs:
        names = [d.name for split_dir in split_dirs for d in split_dir.iterdir() if d.is_dir()]
        return "hollywood2" if names and all(n.startswith("actionclip") for n in names) else "ucf-sports"
    if video_files(root):
        return "videos"
    if any(image_files(d) for d in root.iterdir() if d.is_dir()):
        return "frames"
    raise DatasetError(
        f"{root}: no known dataset layout (expected video/ + annotation/ for DHF1K, training/ or testing/ "
        "for UCF-Sports or Hollywood-2, JPEGImages/ for DAVIS, video files, or folders of frames)"
    )


def _dhf1k(root: Path, manifest: dict[str, str]) -> list[VideoEntry]:
    entries = []
    for video in video_files(root / "video"):
        if not video.stem.isdigit():
            continue
        video_id = f"{int(video.stem):04d}"
        annotation = root / "annotation" / video_id
        maps, fixations = annotation / "maps", annotation / "fixation"
        entries.append(VideoEntry(
            video_id, video, manifest.get(video_id),
            maps_dir=maps if maps.is_dir() else None,
            fixations_dir=fixations if fixations.is_dir() else None,
        ))
    return entries


def _frame_folder_entry(video_id: str, folder: Path, split: str | None, gt_root: Path | None) -> VideoEntry:
    maps = gt_root / "maps" if gt_root else None
    fixations = gt_root / "fixation" if gt_root else None
    return VideoEntry(
        video_id, folder, split, frames=tuple(image_files(folder)),
        maps_dir=maps if maps and maps.is_dir() else None,
        fixations_dir=fixations if fixations and fixations.is_dir() else None,
    )


def _split_folders(root: Path, manifest: dict[str, str]) -> list[VideoEntry]:
    entries = []
    for folder_name, folder_split in FOLDER_SPLITS.items():
        split_dir = root / folder_name
        if not split_dir.is_dir():
            continue
        for video_dir in sorted((d for d in split_dir.iterdir() if d.is_dir()), key=numeric_key):
            split = manifest.get(video_dir.name, folder_split)
            entries.append(_frame_folder_entry(video_dir.name, video_dir / "images", split, video_dir))
    return entries


def _davis(root: Path) -> list[VideoEntry]:
    images = root / "JPEGImages"
    resolutions = sorted((d for d in images.iterdir() if d.is_dir()), key=numeric_key)
    base = images / "480p" if (images / "480p").is_dir() else (resolutions[0] if resolutions else images)
    return [_frame_folder_entry(d.name, d, None, None)
            for d in sorted((d for d in base.iterdir() if d.is_dir()), key=numeric_key)]


def _videos(root: Path) -> list[VideoEntry]:
    return [VideoEntry(p.stem, p) for p in video_files(root)]


def _frames(root: Path) -> list[VideoEntry]:
    return [_frame_folder_entry(d.name, d, None, None)
            for d in sorted((d for d in root.iterdir() if d.is_dir()), key=numeric_key) if image_files(d)]


def discover(root: Path | str, layout: str = "auto", split: str = "all", videos: list[str] | None = None,
             manifest: dict[str, str] | None = None,
             refused: dict[str, str] | None = None) -> tuple[str, list[VideoEntry]]:
    """List a dataset's videos.

    root: the dataset directory. layout: one of LAYOUTS or ``auto``. split: ``train``, ``val``,
    ``test`` or ``all``. videos: keep only these video ids (refused when unknown or path-like).
    manifest: {video id: split}, defaults to the official one in `data_manifests/`.
    refused: when given, a video whose source resolves outside `root` (a symlink that leaves it) is
    left out and put here, {video id: why}, instead of refusing the whole dataset.
    Returns (the layout used, entries in numeric order). Every path stays inside `root`.
    """
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose auto or one of {', '.join(LAYOUTS)}")
    elif not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    if manifest is None:
        manifest = official_manifest(layout)
    for video_id in manifest:  # an entry must never name a path outside the dataset
        if not _plain_name(video_id):  # a plain name is inside; the videos' own paths are resolved below
            inside_root(root, video_id)
    builders = {
        "dhf1k": lambda: _dhf1k(root, manifest),
        "ucf-sports": lambda: _split_folders(root, manifest),
        "hollywood2": lambda: _split_folders(root, manifest),
        "davis": lambda: _davis(root),
        "videos": lambda: _videos(root),
        "frames": lambda: _frames(root),
    }
    entries = builders[layout]()
    sources: dict[str, Path] = {}
    outside: dict[str, str] = {}
    for entry in entries:
        try:
            inside_root(root, entry.source.relative_to(root))
        except DatasetError as error:
            if refused is None:
                raise
            outside[entry.video_id] = str(error)
        if entry.video_id in sources:  # e.g. 002.AVI and 0002.AVI in DHF1K: one store group, two videos
            raise DatasetError(f"{root}: {sources[entry.video_id]} and {entry.source} are both video "
                               f"{entry.video_id!r} in layout {layout}; rename or remove one")
        sources[entry.video_id] = entry.source

    if split != "all":
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose all or one of {', '.join(SPLITS)}")
        if not any(e.split for e in entries):
            raise DatasetError(f"{root}: layout {layout} has no official split; use --split all")
        entries = [e for e in entries if e.split == split]
    if videos:
        by_id = {e.video_id: e for e in entries}
        for video_id in videos:
            _check_video_id(video_id, "--videos")
            inside_root(root, video_id)
        missing = [v for v in videos if v not in by_id]
        if missing:
            raise DatasetError(f"{root}: no video {', '.join(missing)} in layout {layout}"
                               + (f" split {split}" if split != "all" else ""))
        entries = [by_id[v] for v in dict.fromkeys(videos)]
    if outside:
        refused.update((e.video_id, outside[e.video_id]) for e in entries if e.video_id in outside)
        entries = [e for e in entries if e.video_id not in outside]
    return layout, entries
