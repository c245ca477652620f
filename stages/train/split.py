"""Which complete videos of a store train and which validate (the package docstring, "Validation
videos"), and the check that a store can train at all.

`open_training_store(location)` -> the opened FeatureStore (StoreError when no complete video has
maps); `split_videos(store, seed)` -> a `Split`: {video id: frame count} to train on and to
validate on, the rule that chose them, and the videos not used with why."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sal3d.pipeline.store import FeatureStore, StoreError
from sal3d.pipeline.store.unfinished import not_complete_yet, unfinished_videos

HOLDOUT_FRACTION = 0.15


@dataclass
class Split:
    """Which complete videos with maps train and which validate, and the rule that chose them."""

    train: dict[str, int]  # video id -> frame count
    val: dict[str, int]
    rule: str
    ignored: dict[str, str] = field(default_factory=dict)  # video id -> why


def open_training_store(location: str) -> FeatureStore:
    """Open a store and check it can train: at least one complete video with maps."""
    store = FeatureStore(location, mode="r")
    complete = store.complete_videos()
    if not complete:
        unfinished = unfinished_videos(store)
        raise StoreError(f"{location}: no complete video in the store" + (not_complete_yet(unfinished)
                         if unfinished else " (it is empty: run sal3d extract first)"))
    if not any(summary.has_maps for summary in complete.values()):
        raise StoreError(f"{location}: none of its {len(complete)} complete videos has ground-truth maps; "
                         "train-decoder needs maps (extract a dataset that has annotations)")
    return store


def split_videos(store: FeatureStore, seed: int) -> Split:
    """Train / validation videos of a store (see the module docstring). Each video's frame count, maps
    and split come from its own record, checked against its chunks (`FeatureStore.check_videos`), never
    from the store index alone (a guide: an entry that disagrees is said and the record used). A
    damaged video is placed by its index entry, so that training refuses it by name before any step.
    Videos not complete yet (being written, interrupted) are not used, and named in `Split.ignored` and
    in a refusal."""
    complete = store.complete_videos()
    unfinished = unfinished_videos(store, complete=complete)
    candidates, val, ignored = {}, {}, {video: f"not complete: {why}" for video, why in unfinished.items()}
    good, damaged = store.check_videos(list(complete))
    facts = {**{v: store.check_video(v) for v in good}, **{v: complete[v] for v in damaged}}  # checks are cached
    for video, summary in sorted(facts.items()):
        count = summary.frame_count
        if not summary.has_maps:
            ignored[video] = "no ground-truth maps"
        elif count < 1:
            ignored[video] = "no frames"
        elif summary.split == "test":
            ignored[video] = "split test"
        elif summary.split == "val":
            val[video] = count
        else:
            candidates[video] = count
    if val:
        if not candidates:
            raise StoreError(f"{store.location}: every video with maps is a validation video; nothing to train on"
                             + not_complete_yet(unfinished))
        return Split(candidates, val, "videos whose split attribute is 'val'", ignored)
    if len(candidates) < 2:
        raise StoreError(f"{store.location}: {len(candidates)} usable video(s) and none of split 'val': "
                         "at least two are needed to hold one out for validation" + not_complete_yet(unfinished))
    ids = sorted(candidates)
    n_val = min(len(ids) - 1, max(1, round(HOLDOUT_FRACTION * len(ids))))
    held = sorted(ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:n_val])
    rule = (f"no 'val' videos in the store: held out {n_val} of {len(ids)} training videos "
            f"({HOLDOUT_FRACTION:.0%}, at least 1, seeded with --seed {seed})")
    return Split({v: candidates[v] for v in ids if v not in held}, {v: candidates[v] for v in held}, rule, ignored)
