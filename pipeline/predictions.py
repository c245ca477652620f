"""The folder of predicted maps that ``sal3d predict`` writes and resumes: which frames of a video still
lack a map PNG or an overlay (`plan_video` -> `VideoPlan`), and the overlays drawn from the maps.

Layout (stages.predict's docstring says the whole of OUT_DIR)::

    OUT_DIR/<video id>/<frame name>.png          8-bit grey map (pipeline.postprocess)
    OUT_DIR/overlays/<video id>/<frame name>.png the map drawn over the frame (RGB, pipeline.overlay)
    OUT_DIR/overlays/<video id>.mp4              the same, as a video

A PNG under its final name is complete (`write_png` renames a finished temporary into place), so
what a video lacks is read from one directory listing; temporaries a killed run left are removed then.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from sal3d.pipeline.atomic import is_temporary
from sal3d.pipeline.device import usable_cpus
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.overlay import (
    OriginalFrames,
    OverlayStyle,
    overlay,
    remove_temporaries,
    video_fps,
    write_overlay_video,
)
from sal3d.pipeline.datasets import OVERLAY_DIR
from sal3d.pipeline.postprocess import PostProcess, write_png
from sal3d.pipeline.progress import Progress, say
from sal3d.pipeline.store import FeatureStore

#: At most this many threads write a run's PNGs.
PNG_WRITERS_MAX = 8


def default_png_writers() -> int:
    """PNG writer threads when not given: one per usable CPU, at most `PNG_WRITERS_MAX`."""
    return min(PNG_WRITERS_MAX, usable_cpus())


class PredictError(Sal3dError):
    """A prediction that cannot be run as asked; the message names the file and the reason."""


@dataclass
class VideoPlan:
    """One selected video: where its PNGs go and which frames still lack one."""

    video_id: str
    frame_count: int
    names: list[str]
    height: int  # of the written maps
    width: int
    folder: Path
    overlay_folder: Path | None
    todo: np.ndarray  # frame indices to predict (no map PNG yet), ascending
    source: Path | None  # video file or frame folder, for overlays
    overlay_only: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # map PNG present,
    # overlay missing: the overlay is drawn from the PNG, the decoder does not run again

    @property
    def complete(self) -> bool:
        return not len(self.todo) and not len(self.overlay_only)


def _plain_name(name: object, what: str) -> str:
    if (not isinstance(name, str) or not name or name in (".", "..")
            or any(c in name for c in "/\\\0")):
        raise PredictError(f"{what} {name!r} is not a plain file name")
    return name


def plan_video(store: FeatureStore, video_id: str, out_dir: Path, options: PostProcess, overlay: bool,
               source: Path | None) -> VideoPlan:
    """The plan of video `video_id` of `store` (its frame names and original size from the store's
    attrs) into `out_dir`, with overlays when `overlay`; `source` is its video file or frame folder.
    A video id or frame name that is not a plain file name, or a size unknown with --size original,
    is a PredictError."""
    _plain_name(video_id, "video id")
    attrs = store.video_attrs(video_id)
    count = int(attrs["frame_count"])
    names = attrs.get("frame_names")
    if names is None:
        names = [f"{i + 1:04d}" for i in range(count)]
    if len(names) != count:
        raise PredictError(f"{store.location}: video {video_id} has {count} frames but {len(names)} frame names")
    for name in names:
        _plain_name(name, f"video {video_id}: frame name")
    if len(set(names)) != count:
        raise PredictError(f"{store.location}: video {video_id} has duplicate frame names")
    note = stored_frames_note(video_id, attrs)
    if note:
        say(f"predict: note: {note}")
    try:
        height, width = options.output_size(attrs.get("height"), attrs.get("width"))
    except ValueError as error:
        raise PredictError(f"{store.location}: video {video_id}: {error}") from None
    folder = out_dir / video_id
    overlay_folder = out_dir / OVERLAY_DIR / video_id if overlay else None
    missing = {}
    for directory in (folder, overlay_folder):
        if directory is None:
            continue
        present = set()
        if directory.is_dir():
            for entry in os.scandir(directory):
                if is_temporary(entry.name):
                    Path(entry.path).unlink(missing_ok=True)  # left by a killed run
                else:
                    present.add(entry.name)
        missing[directory] = np.array([f"{name}.png" not in present for name in names], dtype=bool)
    no_map = missing[folder]
    no_overlay = missing[overlay_folder] if overlay_folder is not None else np.zeros(count, dtype=bool)
    return VideoPlan(video_id, count, list(names), height, width, folder, overlay_folder,
                     np.flatnonzero(no_map), source, np.flatnonzero(no_overlay & ~no_map))


def stored_frames_note(video_id: str, attrs: dict) -> str | None:
    """Why a stored video (its record's `attrs`) holds fewer frames than its source, from what the
    record says, or None when it holds them all: --max-frames as extract was asked (its origin); an
    older sal3d that kept only the frames that had maps; or a cause the record does not tell."""
    count, source_count = int(attrs["frame_count"]), attrs.get("source_frame_count")
    if not source_count or source_count <= count:
        return None
    max_frames = (attrs.get("origin") or {}).get("max_frames")
    if max_frames and count == min(source_count, max_frames):
        why = f"extracted with --max-frames {max_frames}"
    elif attrs.get("has_maps") and (attrs.get("origin") or {}).get("pairing") is None:
        why = "an older sal3d kept only as many frames as the video had maps; extract again to store them all"
    else:
        why = "its record does not say why"
    return f"the store holds {count} of the {source_count} frames of video {video_id} ({why}); only those are predicted"


# ---------------------------------------------------------------------------- overlays


def overlay_batch(state: dict, plan: VideoPlan, frames: list[int], maps: np.ndarray | None,
                  writes: ThreadPoolExecutor) -> None:
    """Runs on the single overlay thread: decode the frames in order, then blend + write in the pool.

    state: {"style": OverlayStyle}, plus the open frame reader of the last video (kept across calls);
    frames: frame indices of `plan`'s video; maps: their uint8 (H, W) maps, or None to read the PNGs."""
    if state.get("video") != plan.video_id:
        state["video"], state["reader"] = plan.video_id, OriginalFrames(plan.source)
    style = state["style"]
    images = state["reader"].read(frames)
    if maps is None:  # the maps were written by an earlier run
        maps = [read_map(plan.folder / f"{plan.names[t]}.png") for t in frames]
    futures = []
    for image, t, saliency in zip(images, frames, maps):
        futures.append(writes.submit(_write_overlay, plan.overlay_folder / f"{plan.names[t]}.png", image, saliency,
                                     style))
    for future in futures:
        future.result()


def read_map(path: Path) -> np.ndarray:
    """A written map PNG -> uint8 (H, W)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def _write_overlay(path: Path, frame: np.ndarray, saliency: np.ndarray, style: OverlayStyle) -> None:
    write_png(path, overlay(frame, saliency, style))


def overlay_video_path(out_dir: Path, video_id: str) -> Path:
    return Path(out_dir) / OVERLAY_DIR / f"{video_id}.mp4"


def write_overlay_videos(plans: list[VideoPlan], store: FeatureStore, out_dir: Path,
                         style: OverlayStyle) -> dict[str, str]:
    """Write the missing overlay videos of `plans`, from their map PNGs (all written by now) and source
    frames (at the fps `store` records); returns {video id: codec}, in the order of `plans`."""
    remove_temporaries(out_dir / OVERLAY_DIR)
    progress = Progress("predict: overlay videos", total=sum(p.frame_count for p in plans), unit="frames")
    codecs = {}
    try:
        for plan in plans:
            progress.note = plan.video_id
            path = overlay_video_path(out_dir, plan.video_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            codecs[plan.video_id] = write_overlay_video(
                path, OriginalFrames(plan.source),
                lambda indices, plan=plan: [read_map(plan.folder / f"{plan.names[t]}.png") for t in indices],
                plan.frame_count, video_fps(store.video_attrs(plan.video_id).get("fps")), style, progress.update)
    finally:
        progress.close()
    return codecs
