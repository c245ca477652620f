"""`sal3d info`: what a feature store holds, from its index: videos by state, frames, splits, size, trunk.

The complete videos and their attributes come from the store index (one read, see `pipeline.store`);
only the videos the index does not list as complete are read one by one, to say why (incomplete,
being written, damaged, unreadable). With ``check``, every complete video's chunk listing is also
compared with its record (what a reader checks when it opens a video; `sal3d verify` reads the data
as well), and those that fail count as damaged. Folders in ``videos/`` that sal3d did not write are
counted as ``foreign`` ("not sal3d"). The CLI exits 1 when a video is damaged or unreadable (`damage`).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sal3d.pipeline.progress import Progress, say
from sal3d.pipeline.store import FeatureStore

STATES = ("complete", "incomplete", "owned", "damaged", "unreadable", "foreign")
STATE_WORDS = {"owned": "being written", "foreign": "not sal3d"}
#: The states that are damage: `sal3d info` exits 1 when it finds one (as `sal3d verify` does).
DAMAGE = ("damaged", "unreadable")
SHOWN_PROBLEMS = 10  # videos named in the text output per state; --json names them all


@dataclass
class InfoConfig:
    """Everything `sal3d info` was asked; see its --help."""

    store: str
    check: bool = False


@dataclass
class StoreInfo:
    """What `info` found. videos: {state: count} over STATES; problems: {video id: [state, why]} of
    every video that is not complete; splits: {split (or "none"): {"videos", "frames"}} of the complete
    videos; stored_bytes: the chunks of the complete videos (None where the store could not say);
    disk_bytes: everything under a local store's folder (None for other stores)."""

    location: str
    format_version: int
    indexed: bool
    trunk: dict
    trunk_digest: str
    dataset: dict
    videos: dict[str, int]
    frames: int
    with_maps: int
    splits: dict[str, dict[str, int]]
    stored_bytes: int | None
    disk_bytes: int | None
    checked: bool
    problems: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def damage(self) -> int:
        """How many videos are damaged or have metadata that cannot be read."""
        return sum(self.videos[state] for state in DAMAGE)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def lines(self) -> list[str]:
        """The report for a person, a line per fact."""
        weights = self.trunk.get("weights", "?")
        dataset = " at ".join(str(self.dataset[k]) for k in ("layout", "dataset") if self.dataset.get(k))
        counts = ", ".join(f"{self.videos[s]} {STATE_WORDS.get(s, s)}" for s in STATES)
        splits = "; ".join(f"{name}: {s['videos']} video{'s' * (s['videos'] != 1)}, {s['frames']} frames"
                           for name, s in self.splits.items()) or "none"
        size = f"{_size(self.stored_bytes)} of chunks in complete videos"
        if self.disk_bytes is not None:
            size += f"; {_size(self.disk_bytes)} on disk in all"
        lines = [f"store     {self.location} (format {self.format_version}"
                 + (")" if self.indexed else ", no index: `sal3d verify STORE --quick --repair` writes one)"),
                 f"trunk     {self.trunk.get('arch', '?')}, weights {weights} (digest {self.trunk_digest})",
                 f"dataset   {dataset or 'not recorded'}",
                 f"videos    {counts}" + ("" if self.checked else " (chunks not checked: --check)"),
                 f"frames    {self.frames} in complete videos ({self.with_maps} with ground-truth maps)",
                 f"splits    {splits}",
                 f"size      {size}"]
        for state in STATES[1:]:
            named = [(v, why) for v, (s, why) in self.problems.items() if s == state]
            for video_id, why in named[:SHOWN_PROBLEMS]:
                lines.append(f"{STATE_WORDS.get(state, state):<9} {video_id}: {why}")
            if len(named) > SHOWN_PROBLEMS:
                lines.append(f"{STATE_WORDS.get(state, state):<9} ... and {len(named) - SHOWN_PROBLEMS} more (--json)")
        return lines


def info(config: InfoConfig) -> StoreInfo:
    """Read what the store at `config.store` holds (nothing is written)."""
    start = time.perf_counter()
    store = FeatureStore(config.store, mode="r")
    complete = store.complete_videos()
    problems: dict[str, list[str]] = {}
    others = [v for v in store.listed_ids() if v not in complete]
    if config.check and complete:
        _, damaged = store.check_videos(list(complete))
        problems.update({v: ["damaged", why] for v, why in damaged.items()})
        complete = store.complete_videos()  # an index entry the records contradict is now the record's
    if others:
        progress = Progress("info", total=len(others), unit="videos")
        for video_id in others:  # the few the index does not list: each read to say why
            state, _, why = store.state(video_id)
            problems[video_id] = [state, why]
            progress.update(1, note=video_id)
        progress.close()
    good = {v: s for v, s in complete.items() if v not in problems}
    counts = Counter(state for state, _ in problems.values())
    splits: dict[str, dict[str, int]] = {}
    for summary in good.values():
        entry = splits.setdefault(summary.split or "none", {"videos": 0, "frames": 0})
        entry["videos"] += 1
        entry["frames"] += summary.frame_count
    sizes = [s.stored_bytes for s in good.values()]
    result = StoreInfo(
        location=store.location, format_version=store.format_version, indexed=store.index is not None,
        trunk=store.fingerprint, trunk_digest=store.trunk_digest,
        dataset={k: v for k, v in store.attrs.items() if k not in ("format_version", "trunk")},
        videos={"complete": len(good), **{s: counts.get(s, 0) for s in STATES[1:]}},
        frames=sum(s.frame_count for s in good.values()), with_maps=sum(s.has_maps for s in good.values()),
        splits=dict(sorted(splits.items())), stored_bytes=None if None in sizes else sum(sizes),
        disk_bytes=_disk_bytes(Path(store.location)) if store.is_local else None, checked=config.check,
        problems=dict(sorted(problems.items())), seconds=time.perf_counter() - start)
    say(f"info: {len(good)} complete videos, {len(problems)} others, {result.frames} frames "
        f"({result.seconds:.2f} s)")
    return result


def _disk_bytes(folder: Path) -> int:
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(directory, name)).st_size
            except OSError:  # removed while we walked (a writer at work)
                pass
    return total


def _size(count: int | None) -> str:
    if count is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
